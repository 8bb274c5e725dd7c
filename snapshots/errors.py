"""Errors of the snapshot store.

    SnapshotError
     ├── StoreUnavailable   PostgreSQL cannot be reached or dropped the connection:
     │                      retry later; processing goes on, snapshots catch up.
     └── BadQuery           a caller's filter or cursor is malformed (maps to HTTP 400), or
                            PostgreSQL refused a value or a record missing a field (the
                            mirror sets that state or tombstone aside).
"""

from __future__ import annotations

__all__ = ["BadQuery", "SnapshotError", "StoreUnavailable"]


class SnapshotError(Exception):
    pass


class StoreUnavailable(SnapshotError):
    """PostgreSQL is down or unreachable (check DATABASE_URL, `make status`).

    str(): for logs (the driver's words, the password taken out); `public`: for HTTP
    answers, naming the component only, no host, user or database name."""

    def __init__(self, message: str, public: str = "PostgreSQL unavailable") -> None:
        super().__init__(message)
        self.public = public


class BadQuery(SnapshotError):
    pass
