"""Reading a test's snapshots straight from PostgreSQL (its own schema, named after its app)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.support.stack import PG_URL

__all__ = ["snapshot_states", "truncate_snapshots"]


async def snapshot_states(schema: str) -> dict[str, dict[str, Any]]:
    """saga id -> state as snapshotted (empty if the schema does not exist yet)."""
    async with await psycopg.AsyncConnection.connect(PG_URL, row_factory=dict_row) as conn:
        cur = await conn.execute("SELECT to_regclass(%s) AS t", (f'"{schema}".saga_snapshots',))
        row = await cur.fetchone()
        if row is None or row["t"] is None:
            return {}
        cur = await conn.execute(f'SELECT saga_id, state FROM "{schema}".saga_snapshots')
        return {r["saga_id"]: r["state"] for r in await cur.fetchall()}


async def truncate_snapshots(schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(PG_URL) as conn:
        await conn.execute(f'TRUNCATE "{schema}".saga_snapshots, "{schema}".saga_transitions')
        await conn.commit()
