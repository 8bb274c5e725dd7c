"""The snapshot store in PostgreSQL: schema, version-guarded upserts, and the read queries.

Tables:
- saga_snapshots: one row per saga, its latest known state (`state` JSONB), written only if
  the incoming version is newer (an older state never overwrites a newer one);
- saga_transitions: append-only history, one row per status change, keyed by
  (saga_id, version, seq) so a replayed write inserts nothing.
"""

from __future__ import annotations

import base64
import builtins
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from snapshots.errors import BadQuery, StoreUnavailable

__all__ = ["MIGRATIONS", "TERMINAL_STATUSES", "SnapshotStore"]

TERMINAL_STATUSES = ("completed", "failed", "compensated", "compensation_failed")

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
]

# Both statements take the batch as one JSON array of saga states, as the changelog holds
# them, and let PostgreSQL take it apart: the worker parses nothing (its event loop is the
# saga agent's), and a batch is two statements whatever its size.
_UPSERT = """
INSERT INTO saga_snapshots (saga_id, version, status, origin, correlation_id, partner_id,
                            alliance_id, reason, created_at, updated_at, state)
SELECT s->>'saga_id', (s->>'version')::int, s->>'status', s->>'origin', s->>'correlation_id',
       s->>'partner_id', s->>'alliance_id', s->>'reason',
       to_timestamp((s->>'created_at')::float8), to_timestamp((s->>'updated_at')::float8), s
FROM jsonb_array_elements(%s::jsonb) AS s
ON CONFLICT (saga_id) DO UPDATE SET
    version = EXCLUDED.version, status = EXCLUDED.status, partner_id = EXCLUDED.partner_id,
    alliance_id = EXCLUDED.alliance_id, reason = EXCLUDED.reason,
    updated_at = EXCLUDED.updated_at, state = EXCLUDED.state
WHERE saga_snapshots.version < EXCLUDED.version
"""

_HISTORY = """
INSERT INTO saga_transitions (saga_id, version, seq, from_status, to_status, event_type, event_id, at)
SELECT s->>'saga_id', (t->>'version')::int,
       (row_number() OVER (PARTITION BY s->>'saga_id', t->>'version' ORDER BY n) - 1)::int,
       t->>'from_status', t->>'to_status', t->>'event_type', t->>'event_id',
       to_timestamp((t->>'at')::float8)
FROM jsonb_array_elements(%s::jsonb) AS s,
     jsonb_array_elements(s->'transitions') WITH ORDINALITY AS h(t, n)
ON CONFLICT DO NOTHING
"""

_COLUMNS = ("saga_id, version, status, origin, correlation_id, partner_id, alliance_id, reason, "
            "created_at, updated_at")


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


class SnapshotStore:
    """Async access to the snapshot tables through a small connection pool."""

    def __init__(self, url: str, *, schema: str = "public", max_size: int = 4) -> None:
        self.url = url
        self.schema = schema
        self._secret = _password(url)
        self._kwargs: dict[str, Any] = {"autocommit": False, "connect_timeout": 2}
        # Reads (web requests) share a small pool; the mirror writes on a connection of its
        # own that it reopens at once when PostgreSQL returns (a pool would wait out its own
        # reconnection backoff, delaying the catch-up).
        # `check`: a pooled connection is tested before use, so the first read after a
        # PostgreSQL restart does not fail on a connection that died with the old server.
        self.pool = AsyncConnectionPool(url, min_size=1, max_size=max_size, open=False,
                                        kwargs=self._kwargs, configure=self._configure,
                                        check=AsyncConnectionPool.check_connection)
        self._writer: psycopg.AsyncConnection[Any] | None = None

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Every new connection works in the snapshot schema."""
        await conn.execute(pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(self.schema)))
        await conn.commit()

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        text = f"PostgreSQL unavailable: {exc}".strip()
        if self._secret:
            text = text.replace(self._secret, "***")
        return StoreUnavailable(text)

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        await self.pool.close()

    async def _write(self, fn: Any) -> Any:
        try:
            if self._writer is None or self._writer.closed:
                self._writer = await psycopg.AsyncConnection.connect(self.url, **self._kwargs)
                await self._configure(self._writer)
            return await fn(self._writer)
        except psycopg.DataError as exc:  # this data, not the database: the caller decides
            raise BadQuery(f"PostgreSQL refused the data: {exc}".strip()) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if self._writer is not None:
                await self._writer.close()
            self._writer = None
            raise self._unavailable(exc) from exc

    async def _run(self, fn: Any) -> Any:
        try:
            async with self.pool.connection(timeout=3) as conn:
                return await fn(conn)
        except psycopg.errors.UndefinedTable as exc:
            raise StoreUnavailable("snapshot tables not created yet (each worker creates them "
                                   "when PostgreSQL answers)") from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._unavailable(exc) from exc
        except psycopg.DataError as exc:  # e.g. a NUL character in a query parameter
            raise BadQuery(f"invalid value: {exc}".strip()) from exc
        except TimeoutError as exc:  # pool could not get a connection
            raise StoreUnavailable("PostgreSQL unavailable: no connection within 3s") from exc

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

    async def upsert_json(self, newest: Mapping[str, bytes], every: Sequence[bytes] | None = None) -> int:
        """Write saga id -> state JSON (one state per saga: the newest of a batch) and the
        history: the `transitions` of every state in `every` (the batch's states in changelog
        order; default: the newest ones). A state older than the stored one changes nothing."""
        if not newest:
            return 0
        batch = b"[" + b",".join(newest.values()) + b"]"
        states = batch if every is None else b"[" + b",".join(every) + b"]"

        async def go(conn: psycopg.AsyncConnection[Any]) -> int:
            async with conn.transaction():
                await conn.execute(_UPSERT, (batch.decode(),))
                await conn.execute(_HISTORY, (states.decode(),))
            return len(newest)
        return int(await self._write(go))

    async def ping(self) -> None:
        """Is PostgreSQL answering now? On a connection of its own: after an outage the pool
        retries with a doubling backoff (1, 2, 4, 8, 16 s...), so it may still have no
        connection seconds after the server is back, and then reconnects by itself."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, **self._kwargs)
            try:
                await conn.execute("SELECT 1")
            finally:
                await conn.close()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._unavailable(exc) from exc

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
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
        rows = await self._fetch("SELECT status, count(*) AS n FROM saga_snapshots GROUP BY status", [])
        return {r["status"]: int(r["n"]) for r in rows}

    async def get(self, saga_id: str) -> dict[str, Any] | None:
        rows = await self._fetch("SELECT state FROM saga_snapshots WHERE saga_id = %s", [saga_id])
        return dict(rows[0]["state"]) if rows else None

    async def versions(self, saga_ids: Sequence[str]) -> dict[str, int]:
        """The snapshot version of each of these sagas that has a snapshot."""
        rows = await self._fetch("SELECT saga_id, version FROM saga_snapshots WHERE saga_id = ANY(%s)",
                                 [list(saga_ids)])
        return {r["saga_id"]: int(r["version"]) for r in rows}

    async def schema_ready(self) -> bool:
        """Is the schema at this version's migration (created by a mirror)?"""
        rows = await self._fetch(
            "SELECT to_regclass('schema_migrations') IS NOT NULL AS present", [])
        if not rows or not rows[0]["present"]:
            return False
        rows = await self._fetch("SELECT coalesce(max(version), 0) AS v FROM schema_migrations", [])
        return bool(rows) and int(rows[0]["v"]) >= len(MIGRATIONS)

    async def all_states(self) -> builtins.list[dict[str, Any]]:
        rows = await self._fetch("SELECT state FROM saga_snapshots ORDER BY saga_id", [])
        return [dict(r["state"]) for r in rows]

    async def history(self, saga_id: str) -> builtins.list[dict[str, Any]]:
        rows = await self._fetch(
            "SELECT version, seq, from_status, to_status, event_type, event_id, at "
            "FROM saga_transitions WHERE saga_id = %s ORDER BY version, seq", [saga_id])
        return [{**r, "at": r["at"].isoformat()} for r in rows]


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat()}
