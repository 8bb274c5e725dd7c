"""Errors of the snapshot store.

    SnapshotError
     ├── StoreUnavailable   PostgreSQL cannot be reached or dropped the connection:
     │                      retry later; processing goes on, snapshots catch up.
     └── BadQuery           a caller's filter or cursor is malformed (maps to HTTP 400), or
                            PostgreSQL refused a value (the mirror sets that state aside).
"""

from __future__ import annotations

__all__ = ["BadQuery", "SnapshotError", "StoreUnavailable"]


class SnapshotError(Exception):
    pass


class StoreUnavailable(SnapshotError):
    """PostgreSQL is down or unreachable (check DATABASE_URL, `make status`)."""


class BadQuery(SnapshotError):
    pass
