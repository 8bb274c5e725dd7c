"""The snapshot store in PostgreSQL: schema, version-guarded upserts, retention, and the
read queries.

Tables:
- saga_snapshots: one row per saga, its latest known state (`state` JSONB), written only if
  the incoming version is newer (an older state never overwrites a newer one). A saga the
  live tables retained (its changelog tombstone, domain.lifecycle.Tombstone) keeps its row:
  ids, end status, `generation`, `retained_at`, its last state without personal data. Rows
  are never deleted: a retained saga's row is what answers "this business key already had a
  saga" (`latest_for_key`).
- saga_transitions: append-only history, one row per status change, keyed by
  (saga_id, version, seq), seq being the change's place among its version's changes, so a
  state written twice (replayed, or twice in one batch) inserts nothing the second time.

Retention (`prune`): a finished saga (completed, failed, compensated) past its own retention
loses its history rows and the personal data of its row (`pruned_at`); a saga in
compensation_failed or still running is never touched.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from domain.privacy import PERSONAL_FIELDS
from runtime.errors import BadQuery, StoreUnavailable, postgres_refusal

__all__ = ["MIGRATIONS", "PERSONAL_FIELDS", "RETAINABLE_STATUSES", "TERMINAL_STATUSES", "SnapshotStore",
           "store_from_settings"]

TERMINAL_STATUSES = ("completed", "failed", "compensated", "compensation_failed")
#: The ends retention may prune (domain.lifecycle.RETAINABLE): compensation_failed waits for a
#: person and is never pruned, nor is a saga still running.
RETAINABLE_STATUSES = ("completed", "failed", "compensated")

_RETAINABLE_SQL = ", ".join(f"'{s}'" for s in RETAINABLE_STATUSES)
_PERSONAL_SQL = "ARRAY[" + ", ".join(f"'{f}'" for f in PERSONAL_FIELDS) + "]"

MIGRATIONS: list[str] = [
    # 1: snapshots and history
    """
    CREATE TABLE IF NOT EXISTS saga_snapshots (
        saga_id        text PRIMARY KEY,
        version        integer NOT NULL,
        status         text NOT NULL,
        origin         text NOT NULL,
        correlation_id text NOT NULL,
        partner_id     text,
        alliance_id    text,
        reason         text,
        created_at     timestamptz NOT NULL,
        updated_at     timestamptz NOT NULL,
        state          jsonb NOT NULL
    );
    CREATE INDEX IF NOT EXISTS saga_snapshots_created ON saga_snapshots (created_at DESC, saga_id DESC);
    CREATE INDEX IF NOT EXISTS saga_snapshots_status
        ON saga_snapshots (status, created_at DESC, saga_id DESC);
    CREATE INDEX IF NOT EXISTS saga_snapshots_partner ON saga_snapshots (partner_id);
    CREATE TABLE IF NOT EXISTS saga_transitions (
        saga_id     text NOT NULL,
        version     integer NOT NULL,
        seq         integer NOT NULL,
        from_status text,
        to_status   text NOT NULL,
        event_type  text NOT NULL,
        event_id    text NOT NULL,
        at          timestamptz NOT NULL,
        PRIMARY KEY (saga_id, version, seq)
    );
    """,
    # 2: search by correlation id (saga id and partner id have theirs), filter by origin
    """
    CREATE INDEX IF NOT EXISTS saga_snapshots_correlation ON saga_snapshots (correlation_id);
    """,
    # 3: a version's status changes are written once (issue #20). The seq used to be counted
    # over every copy of a version in a batch, so a state read twice in one batch (a record
    # written twice to the changelog, a redelivered state) gave its changes again under the
    # next seqs. Keep the first copy of each change, number the rest 0, 1, 2... within their
    # version as the insert does now (through negative numbers: no two rows share a key on
    # the way), and let no change of a version be stored twice whatever its seq (a mirror
    # of the previous version, during a rolling upgrade, included).
    """
    DELETE FROM saga_transitions d USING saga_transitions k
    WHERE d.saga_id = k.saga_id AND d.version = k.version AND d.event_id = k.event_id
      AND d.to_status = k.to_status AND coalesce(d.from_status, '') = coalesce(k.from_status, '')
      AND d.seq > k.seq;
    WITH r AS (SELECT saga_id, version, seq,
                      (row_number() OVER (PARTITION BY saga_id, version ORDER BY seq) - 1)::int AS n
               FROM saga_transitions)
    UPDATE saga_transitions t SET seq = -1 - r.n FROM r
    WHERE t.saga_id = r.saga_id AND t.version = r.version AND t.seq = r.seq AND t.seq <> r.n;
    UPDATE saga_transitions SET seq = -1 - seq WHERE seq < 0;
    CREATE UNIQUE INDEX IF NOT EXISTS saga_transitions_once
        ON saga_transitions (saga_id, version, event_id, to_status, coalesce(from_status, ''));
    """,
    # 4: retention (issue #20). `generation`: which saga of its business key (domain.lifecycle);
    # `business_key`: what a repeated start carries (an HTTP saga's correlation id, a
    # partner-started saga's partner id), indexed for `latest_for_key`; `retained_at`: when
    # the live tables replaced the saga by its tombstone (NULL: not retained), and
    # `current_saga_id` the key's next saga the tombstone points to; `pruned_at`: when this
    # store's own retention removed the saga's history and personal data. saga_scrub(state):
    # the state without the partner's personal data (in `partner` and in the commands'
    # `data`). The partial index holds exactly the rows `prune` may still take.
    f"""
    ALTER TABLE saga_snapshots
        ADD COLUMN IF NOT EXISTS generation integer NOT NULL DEFAULT 1,
        ADD COLUMN IF NOT EXISTS retained_at timestamptz,
        ADD COLUMN IF NOT EXISTS current_saga_id text,
        ADD COLUMN IF NOT EXISTS pruned_at timestamptz,
        ADD COLUMN IF NOT EXISTS business_key text GENERATED ALWAYS AS (
            CASE WHEN origin = 'partner_event' AND partner_id IS NOT NULL THEN partner_id
                 ELSE correlation_id END) STORED;
    UPDATE saga_snapshots SET generation = (state->>'generation')::int
    WHERE coalesce((state->>'generation')::int, 1) <> 1;
    CREATE INDEX IF NOT EXISTS saga_snapshots_key ON saga_snapshots (business_key, generation DESC);
    CREATE INDEX IF NOT EXISTS saga_snapshots_prunable ON saga_snapshots (updated_at)
        WHERE pruned_at IS NULL AND status IN ({_RETAINABLE_SQL});
    CREATE OR REPLACE FUNCTION saga_scrub(s jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE AS $$
        SELECT CASE WHEN jsonb_typeof(s->'partner') = 'object'
                    THEN jsonb_set(s, '{{partner}}', (s->'partner') - {_PERSONAL_SQL}) ELSE s END
            || CASE WHEN jsonb_typeof(s->'applied') = 'array' THEN jsonb_build_object('applied', (
                   SELECT coalesce(jsonb_agg(
                       CASE WHEN jsonb_typeof(a->'commands') = 'array'
                            THEN a || jsonb_build_object('commands', (
                                SELECT coalesce(jsonb_agg(
                                    CASE WHEN jsonb_typeof(c->'data') = 'object'
                                         THEN c || jsonb_build_object('data', (c->'data') - {_PERSONAL_SQL})
                                         ELSE c END ORDER BY i), '[]'::jsonb)
                                FROM jsonb_array_elements(a->'commands') WITH ORDINALITY AS x(c, i)))
                            ELSE a END ORDER BY j), '[]'::jsonb)
                   FROM jsonb_array_elements(s->'applied') WITH ORDINALITY AS y(a, j)))
                 ELSE '{{}}'::jsonb END
    $$;
    """,
    # 5: the stored state's schema version (wire/stored.py; 1 for a state written before
    # release 0.3.0, which carries none), for a query of what an upgrade still has to read.
    """
    ALTER TABLE saga_snapshots ADD COLUMN IF NOT EXISTS schema_version integer
        GENERATED ALWAYS AS (coalesce((state->>'sv')::int, 1)) STORED;
    """,
    # 6: which saga definition each saga runs (issue #24: a saga runs the flow version it
    # started with), for "is any saga of this version left" (SnapshotStore.definitions).
    f"""
    ALTER TABLE saga_snapshots
        ADD COLUMN IF NOT EXISTS flow text
            GENERATED ALWAYS AS (coalesce(state->>'flow', 'partner-creation')) STORED,
        ADD COLUMN IF NOT EXISTS flow_version integer
            GENERATED ALWAYS AS (coalesce((state->>'flow_version')::int, 1)) STORED;
    CREATE INDEX IF NOT EXISTS saga_snapshots_definition_left ON saga_snapshots (flow, flow_version)
        WHERE status NOT IN ({_RETAINABLE_SQL});
    """,
]

# Both statements take the batch as one JSON array of saga states, as the changelog holds
# them, and let PostgreSQL take it apart: the worker parses nothing (its event loop is the
# saga agent's), and a batch is two statements whatever its size.
_UPSERT = """
INSERT INTO saga_snapshots (saga_id, version, status, origin, correlation_id, partner_id,
                            alliance_id, reason, created_at, updated_at, state, generation)
SELECT s->>'saga_id', (s->>'version')::int, s->>'status', s->>'origin', s->>'correlation_id',
       s->>'partner_id', s->>'alliance_id', s->>'reason',
       to_timestamp((s->>'created_at')::float8), to_timestamp((s->>'updated_at')::float8), s,
       coalesce((s->>'generation')::int, 1)
FROM jsonb_array_elements(%s::jsonb) AS s
ON CONFLICT (saga_id) DO UPDATE SET
    version = EXCLUDED.version, status = EXCLUDED.status, partner_id = EXCLUDED.partner_id,
    alliance_id = EXCLUDED.alliance_id, reason = EXCLUDED.reason,
    updated_at = EXCLUDED.updated_at, state = EXCLUDED.state, generation = EXCLUDED.generation
WHERE saga_snapshots.version < EXCLUDED.version
"""

# A change's seq is its place among its state's `transitions` (all of one version), so the
# same state written again, in this batch or a later one, gives the same keys and inserts
# nothing; saga_transitions_once stops the same change under another seq. A pruned saga's
# history stays removed when its last state is read again (a replay, a rebuild).
_HISTORY = """
INSERT INTO saga_transitions (saga_id, version, seq, from_status, to_status, event_type, event_id, at)
SELECT s->>'saga_id', (t->>'version')::int, (h.n - 1)::int,
       t->>'from_status', t->>'to_status', t->>'event_type', t->>'event_id',
       to_timestamp((t->>'at')::float8)
FROM jsonb_array_elements(%s::jsonb) AS s,
     jsonb_array_elements(s->'transitions') WITH ORDINALITY AS h(t, n)
WHERE NOT EXISTS (SELECT 1 FROM saga_snapshots p
                  WHERE p.saga_id = s->>'saga_id' AND p.pruned_at IS NOT NULL)
ON CONFLICT DO NOTHING
"""

# A retained saga's tombstone (domain.lifecycle.Tombstone) over its row: the ids, end status
# and generation are the tombstone's, the version goes up to the tombstone's (never down: an
# older tombstone, or a replayed one, changes nothing), the state stays the saga's last one
# without personal data. A tombstone with no row yet (snapshots rebuilt from a compacted
# changelog) makes one from the tombstone's fields alone. No history rows.
_TOMBSTONE = """
INSERT INTO saga_snapshots (saga_id, version, status, origin, correlation_id, partner_id,
                            alliance_id, reason, created_at, updated_at, state, generation,
                            retained_at, current_saga_id)
SELECT DISTINCT ON (t->>'saga_id')
       t->>'saga_id', (t->>'version')::int, t->>'status', t->>'origin', t->>'correlation_id',
       t->>'partner_id', t->>'alliance_id', t->>'reason',
       to_timestamp((t->>'created_at')::float8), to_timestamp((t->>'ended_at')::float8),
       (t - ARRAY['tombstone', 'business_key', 'ended_at', 'retained_at', 'current'])
           || jsonb_build_object('updated_at', t->'ended_at', 'partner', '{}'::jsonb,
                                 'generation', coalesce((t->>'generation')::int, 1)),
       coalesce((t->>'generation')::int, 1), to_timestamp((t->>'retained_at')::float8), t->>'current'
FROM jsonb_array_elements(%s::jsonb) AS t
ORDER BY t->>'saga_id', (t->>'version')::int DESC
ON CONFLICT (saga_id) DO UPDATE SET
    version = EXCLUDED.version, status = EXCLUDED.status, partner_id = EXCLUDED.partner_id,
    alliance_id = EXCLUDED.alliance_id, reason = EXCLUDED.reason, updated_at = EXCLUDED.updated_at,
    generation = EXCLUDED.generation, retained_at = EXCLUDED.retained_at,
    current_saga_id = EXCLUDED.current_saga_id, state = saga_scrub(saga_snapshots.state)
WHERE saga_snapshots.version < EXCLUDED.version
"""

# One batch of retention: at most %(batch)s finished sagas past it, oldest end first, skipping
# rows another transaction holds. Their history goes, their state loses its personal data,
# the row stays (ids, end status, times, generation: what answers for the key later).
_PRUNE = f"""
WITH victims AS (
    SELECT saga_id FROM saga_snapshots
    WHERE pruned_at IS NULL AND status IN ({_RETAINABLE_SQL})
      AND updated_at < now() - make_interval(secs => %(retention_s)s)
    ORDER BY updated_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), history AS (
    DELETE FROM saga_transitions t USING victims v WHERE t.saga_id = v.saga_id
)
UPDATE saga_snapshots s SET state = saga_scrub(s.state), pruned_at = now()
FROM victims v
WHERE s.saga_id = v.saga_id AND s.status IN ({_RETAINABLE_SQL})
"""

_COLUMNS = ("saga_id, version, status, origin, correlation_id, partner_id, alliance_id, reason, "
            "created_at, updated_at")
# What `get` and `all_states` read: the state and what the row knows beyond it.
_ROW = ("saga_id, version, status, state, generation, business_key, updated_at, retained_at, "
        "pruned_at, current_saga_id")


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def encode_cursor(created_at: datetime, saga_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), saga_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, saga_id = json.loads(raw)
        return datetime.fromisoformat(created), str(saga_id)
    except (ValueError, TypeError) as exc:
        raise BadQuery(f"malformed cursor {cursor!r}") from exc


def _epoch(at: datetime | None) -> float | None:
    return at.timestamp() if at is not None else None


def _as_saga(row: dict[str, Any]) -> dict[str, Any]:
    """A snapshot row as `get` answers it: the saga's state, and for a saga that left the live
    tables (retained) or lost its personal data here (pruned) what the row adds to it."""
    state = dict(row["state"])
    if row["retained_at"] is None and row["pruned_at"] is None:
        return state
    return {**state, "saga_id": row["saga_id"], "status": row["status"], "version": row["version"],
            "tombstone": True, "generation": row["generation"], "business_key": row["business_key"],
            "ended_at": _epoch(row["updated_at"]), "retained_at": _epoch(row["retained_at"]),
            "pruned_at": _epoch(row["pruned_at"]), "current": row["current_saga_id"]}


def store_from_settings(cfg: Any, **kwargs: Any) -> SnapshotStore:
    """The store DATABASE_URL, SNAPSHOT_SCHEMA and DATABASE_PASSWORD(_FILE) describe (`cfg`:
    runtime.settings.Settings); TLS comes with the URL's own parameters (sslmode=verify-full,
    sslrootcert=...), which libpq reads."""
    return SnapshotStore(cfg.database_url, schema=cfg.snapshot_schema,
                         counts_max_age_s=cfg.snapshot_counts_max_age_s,
                         password=cfg.database_password_value(), **kwargs)


class SnapshotStore:
    """Async access to the snapshot tables through a small connection pool.

    `counts_max_age_s`: how old the status counts (`counts`) may be; every caller of this
    store within that time shares one query. `reconnect_timeout_s`: how long the pool's
    reconnection backoff runs before it starts over (psycopg_pool doubles its wait without a
    cap: after a long outage it would retry minutes apart; started over, the next request
    is tried at once)."""

    def __init__(self, url: str, *, schema: str = "public", max_size: int = 4,
                 counts_max_age_s: float = 2.0, reconnect_timeout_s: float = 10.0,
                 password: str | None = None) -> None:
        self.url = url
        self.schema = schema
        self.counts_max_age_s = counts_max_age_s
        self._secret = password or _password(url)
        self._kwargs: dict[str, Any] = {"autocommit": False, "connect_timeout": 2}
        if password is not None:  # DATABASE_PASSWORD(_FILE): kept out of the URL
            self._kwargs["password"] = password
        self._max_size, self._reconnect_timeout_s = max_size, reconnect_timeout_s
        self._pool: AsyncConnectionPool | None = None
        self._writer: psycopg.AsyncConnection[Any] | None = None
        self._counts: tuple[float, dict[str, int]] | None = None
        self._counting: asyncio.Future[dict[str, int]] | None = None

    @property
    def pool(self) -> AsyncConnectionPool:
        """Reads (web requests, /ready) share a small pool, made at first use (`open`): making
        a store opens and makes nothing. The mirror writes on a connection of its own that it
        reopens at once when PostgreSQL returns, so that catching up waits for no backoff.
        `check`: a pooled connection is tested before use, so the first read after a
        PostgreSQL restart does not fail on a connection that died with the old server."""
        if self._pool is None:
            self._pool = AsyncConnectionPool(self.url, min_size=1, max_size=self._max_size, open=False,
                                             kwargs=self._kwargs, configure=self._configure,
                                             check=AsyncConnectionPool.check_connection,
                                             reconnect_timeout=self._reconnect_timeout_s)
        return self._pool

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Every new connection works in the snapshot schema."""
        await conn.execute(pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(self.schema)))
        await conn.commit()

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        text = f"PostgreSQL unavailable: {exc}".strip()
        if self._secret:
            text = text.replace(self._secret, "***")
        refusal = postgres_refusal(str(exc))  # credentials, TLS, pg_hba: said without host or user
        return StoreUnavailable(text, public=f"PostgreSQL {refusal}" if refusal else "PostgreSQL unavailable")

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        if self._pool is not None:
            await self._pool.close()

    async def _write(self, fn: Any) -> Any:
        try:
            if self._writer is None or self._writer.closed:
                self._writer = await psycopg.AsyncConnection.connect(self.url, **self._kwargs)
                await self._configure(self._writer)
            return await fn(self._writer)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            # this data, not the database (a value it cannot store, a state or tombstone
            # missing a field): the caller decides
            raise BadQuery(f"PostgreSQL refused the data: {exc}".strip()) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if self._writer is not None:
                await self._writer.close()
            self._writer = None
            raise self._unavailable(exc) from exc

    async def _run(self, fn: Any, *, wait_s: float = 3.0) -> Any:
        """`fn(conn)` on a pooled connection, waiting at most `wait_s` for one."""
        try:
            async with self.pool.connection(timeout=wait_s) as conn:
                return await fn(conn)
        except psycopg.errors.UndefinedTable as exc:
            raise StoreUnavailable("snapshot tables not created yet (each worker creates them "
                                   "when PostgreSQL answers)") from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._unavailable(exc) from exc
        except psycopg.DataError as exc:  # e.g. a NUL character in a query parameter
            raise BadQuery(f"invalid value: {exc}".strip()) from exc
        except TimeoutError as exc:  # pool could not get a connection
            raise StoreUnavailable(f"PostgreSQL unavailable: no connection within {wait_s:g}s") from exc

    async def migrate(self) -> int:
        """Create or upgrade the schema; return the schema version. Safe to run concurrently."""
        async def go(conn: psycopg.AsyncConnection[Any]) -> int:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(4242001)")
                await conn.execute(
                    pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(self.schema)))
                await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                                   "version integer PRIMARY KEY, applied_at timestamptz DEFAULT now())")
                cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
                row = await cur.fetchone()
                current = int(row[0]) if row else 0
                for n, sql in enumerate(MIGRATIONS, start=1):
                    if n > current:
                        await conn.execute(sql)
                        await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (n,))
                return len(MIGRATIONS)
        return int(await self._write(go))

    async def upsert_json(self, newest: Mapping[str, bytes], every: Sequence[bytes] | None = None,
                          tombstones: Mapping[str, bytes] | None = None) -> int:
        """Write one batch, in one transaction: saga id -> state JSON (one state per saga: the
        newest of a batch), the history (the `transitions` of every state in `every`: the
        batch's states in changelog order, default the newest ones; a state given twice
        counts once), then saga id -> tombstone JSON (domain.lifecycle.Tombstone: the saga
        left the live tables; its row is marked retained, its personal data removed). A state
        or tombstone older than the stored row changes nothing. Returns how many sagas."""
        tombstones = tombstones or {}
        if not newest and not tombstones:
            return 0
        batch = b"[" + b",".join(newest.values()) + b"]"
        states = batch if every is None else b"[" + b",".join(every) + b"]"
        buried = b"[" + b",".join(tombstones.values()) + b"]"

        async def go(conn: psycopg.AsyncConnection[Any]) -> int:
            async with conn.transaction():
                if newest:
                    await conn.execute(_UPSERT, (batch.decode(),))
                    await conn.execute(_HISTORY, (states.decode(),))
                if tombstones:
                    await conn.execute(_TOMBSTONE, (buried.decode(),))
            return len(newest) + len(tombstones)
        return int(await self._write(go))

    async def ping(self, *, wait_s: float = 2.5) -> None:
        """Is PostgreSQL answering now? Through the pool (GET /ready calls this every few
        seconds): a pooled connection, tested before use; none within `wait_s` is an
        answer too (StoreUnavailable)."""
        async def go(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute("SELECT 1")
            await conn.rollback()
        await self._run(go, wait_s=wait_s)

    async def _fetch(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[dict[str, Any]]:
        async def go(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(sql, params)
                rows = await cur.fetchall()
            await conn.rollback()
            return rows
        return list(await self._run(go))

    async def list(self, *, status: Sequence[str] | None = None, partner_id: str | None = None,
                   origin: str | None = None, search: str | None = None,
                   limit: int = 50, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Sagas newest first, keyset-paginated: (rows, cursor of the next page or None).
        `search` is a saga id, partner id or correlation id (exact)."""
        where: list[str] = []
        params: list[Any] = []
        if status:
            where.append("status = ANY(%s)")
            params.append(list(status))
        if partner_id:
            where.append("partner_id = %s")
            params.append(partner_id)
        if origin:
            where.append("origin = %s")
            params.append(origin)
        if search:
            where.append("(saga_id = %s OR partner_id = %s OR correlation_id = %s)")
            params += [search, search, search]
        if cursor:
            created, saga_id = decode_cursor(cursor)
            where.append("(created_at, saga_id) < (%s, %s)")
            params += [created, saga_id]
        sql = (f"SELECT {_COLUMNS} FROM saga_snapshots"
               f"{' WHERE ' + ' AND '.join(where) if where else ''}"
               " ORDER BY created_at DESC, saga_id DESC LIMIT %s")
        rows = await self._fetch(sql, [*params, limit + 1])
        nxt = encode_cursor(rows[limit - 1]["created_at"], rows[limit - 1]["saga_id"]) \
            if len(rows) > limit else None
        return [_public(r) for r in rows[:limit]], nxt

    async def attention(self, *, overdue_s: float, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """Sagas a person should look at: every one in compensation_failed, and live ones
        whose deadline passed more than `overdue_s` ago (their timeout should have fired:
        no worker serves their partition, or the deadline index lost them), oldest first."""
        sql = (f"SELECT {_COLUMNS}, (state->'deadline'->>'due_at')::float8 AS due_at,"
               " state->'deadline'->>'step' AS step FROM saga_snapshots"
               " WHERE status = 'compensation_failed' OR (status <> ALL(%s)"
               " AND (state->'deadline'->>'due_at')::float8 < extract(epoch FROM now()) - %s)"
               " ORDER BY updated_at LIMIT %s")
        rows = await self._fetch(sql, [list(TERMINAL_STATUSES), overdue_s, limit])
        return [_public(r) for r in rows]

    async def counts(self) -> dict[str, int]:
        """Sagas per status. Counted at most once per `counts_max_age_s` for every caller of
        this store (the dashboard asks every 2 s per open tab): a caller within that time
        gets the last counts, callers while a count runs share its answer."""
        cached = self._counts
        if cached is not None and time.monotonic() - cached[0] < self.counts_max_age_s:
            return dict(cached[1])
        if self._counting is None:
            self._counting = asyncio.ensure_future(self._count())
            self._counting.add_done_callback(self._counted)
        # shielded: a caller that goes away (its client disconnected) does not cancel the
        # count the others wait for
        return dict(await asyncio.shield(self._counting))

    async def _count(self) -> dict[str, int]:
        started = time.monotonic()
        rows = await self._fetch("SELECT status, count(*) AS n FROM saga_snapshots GROUP BY status", [])
        counts = {r["status"]: int(r["n"]) for r in rows}
        self._counts = (started, counts)
        return counts

    async def definitions(self) -> builtins.list[dict[str, Any]]:
        """Sagas left per flow version: those that have not ended, and those waiting for a
        person (`compensation_failed`, which an operator may retry under its version). A
        version with none left, and not the newest, may leave the deployment
        (docs/upgrades.md). [{flow, version, sagas_left}], by flow and version."""
        rows = await self._fetch(
            "SELECT flow, flow_version, count(*) AS n FROM saga_snapshots "
            f"WHERE status NOT IN ({_RETAINABLE_SQL}) "
            "GROUP BY flow, flow_version ORDER BY flow, flow_version", [])
        return [{"flow": r["flow"], "version": int(r["flow_version"]), "sagas_left": int(r["n"])}
                for r in rows]

    def _counted(self, fut: asyncio.Future[dict[str, int]]) -> None:
        self._counting = None
        if not fut.cancelled():
            fut.exception()  # retrieved: a failure reached its callers; the next call tries again

    async def get(self, saga_id: str) -> dict[str, Any] | None:
        """A saga's snapshot: its last state; for a saga retained from the live tables (or
        pruned here) that state without personal data, with `"tombstone": true`,
        `generation`, `ended_at`, `retained_at` (epoch seconds; None when only pruned),
        `pruned_at`, `current` (the key's next saga) and `business_key`, `version` being the
        row's (the tombstone's). None: no such saga."""
        rows = await self._fetch(f"SELECT {_ROW} FROM saga_snapshots WHERE saga_id = %s", [saga_id])
        return _as_saga(rows[0]) if rows else None

    async def latest_for_key(self, business_key: str, *, origin: str | None = None) -> dict[str, Any] | None:
        """The newest saga (highest generation) of a business key: an HTTP saga's
        correlation id, a partner-started saga's partner id (`origin` "http" or
        "partner_event" keeps to one kind). Its saga_id, status, generation, version,
        origin, correlation_id, partner_id, `tombstone` (retained or pruned), `current`, and
        times as epoch seconds: created_at, updated_at, `ended_at` (when it reached a
        terminal status; None while it runs) and `retained_at`. None: no saga had the key.
        One index look-up (saga_snapshots_key)."""
        where = "business_key = %s" + (" AND origin = %s" if origin else "")
        rows = await self._fetch(
            "SELECT saga_id, status, generation, version, origin, correlation_id, partner_id, created_at,"
            " updated_at, retained_at, pruned_at, current_saga_id FROM saga_snapshots"
            f" WHERE {where} ORDER BY generation DESC, created_at DESC LIMIT 1",
            [business_key, origin] if origin else [business_key])
        if not rows:
            return None
        r = rows[0]
        return {"saga_id": r["saga_id"], "status": r["status"], "generation": r["generation"],
                "version": r["version"], "origin": r["origin"], "correlation_id": r["correlation_id"],
                "partner_id": r["partner_id"],
                "tombstone": r["retained_at"] is not None or r["pruned_at"] is not None,
                "current": r["current_saga_id"], "created_at": _epoch(r["created_at"]),
                "updated_at": _epoch(r["updated_at"]),
                "ended_at": _epoch(r["updated_at"]) if r["status"] in TERMINAL_STATUSES else None,
                "retained_at": _epoch(r["retained_at"])}

    async def versions(self, saga_ids: Sequence[str]) -> dict[str, int]:
        """The snapshot version of each of these sagas that has a snapshot."""
        rows = await self._fetch("SELECT saga_id, version FROM saga_snapshots WHERE saga_id = ANY(%s)",
                                 [list(saga_ids)])
        return {r["saga_id"]: int(r["version"]) for r in rows}

    async def prune(self, retention_s: float, *, batch: int = 1000, max_batches: int = 100) -> int:
        """This store's retention: every finished saga (RETAINABLE_STATUSES) whose end is more
        than `retention_s` ago loses its history rows and the personal data of its state
        (saga_scrub); its row stays, marked `pruned_at`. compensation_failed and running
        sagas are never touched. In statements of at most `batch` sagas, each its own
        transaction, until one takes fewer or `max_batches` ran; one store prunes at a time
        (the others, on other workers, find the lock taken and leave it). Returns how many."""
        async def one(conn: psycopg.AsyncConnection[Any]) -> int:
            async with conn.transaction():
                cur = await conn.execute("SELECT pg_try_advisory_xact_lock(4242002)")
                row = await cur.fetchone()
                if not row or not row[0]:
                    return -1  # another store is pruning
                cur = await conn.execute(_PRUNE, {"retention_s": float(retention_s), "batch": int(batch)})
                return max(0, cur.rowcount)

        total = 0
        for _ in range(max_batches):
            n = int(await self._run(one, wait_s=10.0))
            if n < 0:
                break
            total += n
            if n < batch:
                break
        return total

    async def schema_ready(self) -> bool:
        """Is the schema at this version's migration (created by a mirror)?"""
        rows = await self._fetch(
            "SELECT to_regclass('schema_migrations') IS NOT NULL AS present", [])
        if not rows or not rows[0]["present"]:
            return False
        rows = await self._fetch("SELECT coalesce(max(version), 0) AS v FROM schema_migrations", [])
        return bool(rows) and int(rows[0]["v"]) >= len(MIGRATIONS)

    async def all_states(self) -> builtins.list[dict[str, Any]]:
        """Every saga as `get` answers it, by saga id."""
        rows = await self._fetch(f"SELECT {_ROW} FROM saga_snapshots ORDER BY saga_id", [])
        return [_as_saga(r) for r in rows]

    async def history(self, saga_id: str) -> builtins.list[dict[str, Any]]:
        rows = await self._fetch(
            "SELECT version, seq, from_status, to_status, event_type, event_id, at "
            "FROM saga_transitions WHERE saga_id = %s ORDER BY version, seq", [saga_id])
        return [{**r, "at": r["at"].isoformat()} for r in rows]


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat()}
