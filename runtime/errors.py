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


#: What PostgreSQL (or libpq) says when it answers and refuses, and how to say it in a line.
_REFUSALS = (
    ("password authentication failed", "refused the password: check DATABASE_PASSWORD_FILE (or the URL's)"),
    ("no password supplied", "wants a password: set DATABASE_PASSWORD_FILE"),
    ("certificate verify failed", "TLS certificate not trusted: check sslrootcert= in DATABASE_URL"),
    ("does not match host name", "TLS certificate does not name this host: connect by a name the "
                                 "certificate carries (sslmode=verify-full)"),
    ("root certificate file", "cannot read the root certificate: check sslrootcert= in DATABASE_URL"),
    ("no encryption", "refuses connections without TLS (pg_hba hostssl): add sslmode=verify-full to "
                      "DATABASE_URL"),
    ("server does not support SSL", "does not speak TLS: drop sslmode= from DATABASE_URL, or turn "
                                    "ssl on in the server"),
    ("no pg_hba.conf entry", "has no pg_hba.conf entry for this user, database or address"),
    ("does not exist", "has no such role or database: check DATABASE_URL"),
)


def postgres_refusal(message: str) -> str | None:
    """One line for a connection PostgreSQL refused (credentials, TLS, pg_hba), or None when the
    message says it could not be reached at all (down, no route): then the caller waits."""
    for needle, line in _REFUSALS:
        if needle in message:
            return line
    return None
