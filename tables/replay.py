"""Changelog records replayed into a store that may already hold newer states.

Faust replays a changelog into the local store on recovery and for standby replicas, a buffer
at a time, and trusts the order: the last record applied wins. The saga agent writes the same
store directly (tables/writer.py) once a partition is active. A replayed record that reaches
the store after the agent wrote a newer state of the same saga (a standby buffer flushed late
around a takeover) would take the saga back to an older version: its stale deadline would fire
and a step would run again. One saga ended twice that way, or so it looked, in an upgrade test
(bench/results/upgrade-2026-12-04-ended-twice.txt).

So the `sagas` table applies a replayed state only if its version is at least the stored one's
(`newer_only`): a saga's versions only grow (its tombstone's is higher than its last state's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

__all__ = ["Replayed", "newer_only", "stored_version"]

_VERSION = b'"version":'


class Replayed(Protocol):
    """A replayed changelog record: what newer_only reads of one."""

    @property
    def partition(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


def stored_version(raw: bytes | None) -> int | None:
    """The saga version a stored state or tombstone carries: its `"version"` member, the first
    in the object (`"flow_version"` does not match: its name does not start with a quote after
    the underscore). None for no value or a value without one."""
    if not raw:
        return None
    at = raw.find(_VERSION)
    if at < 0:
        return None
    start = end = at + len(_VERSION)
    while end < len(raw) and 48 <= raw[end] <= 57:  # ASCII digits
        end += 1
    return int(raw[start:end]) if end > start else None


def newer_only(records: Sequence[Replayed],
               stored: Callable[[int, bytes], bytes | None]) -> tuple[list[int], int]:
    """The positions of the records to apply, in order, and how many were skipped: a state
    older than what the store (`stored(partition, key)`), or an earlier record of the same
    batch, holds for its saga. Deletions and values without a version are always applied."""
    latest: dict[tuple[int, bytes], int | None] = {}
    kept: list[int] = []
    for i, r in enumerate(records):
        key = r.key
        version = stored_version(r.value)
        if key is None or version is None:
            if key is not None:
                latest[(r.partition, key)] = None
            kept.append(i)
            continue
        k = (r.partition, key)
        have = latest[k] if k in latest else stored_version(stored(r.partition, key))
        if have is not None and version < have:
            continue
        latest[k] = version
        kept.append(i)
    return kept, len(records) - len(kept)

