"""What the agents need from the adapters, declared here and handed over by the composition root.

The agents ask integraciones about a partner (`PartnerLookup`: bridges/alpes.py) and ask which
saga versions PostgreSQL holds (`SnapshotVersions`: snapshots/store.py). (They send nothing
to a participant themselves: commands go through the Kafka outbox, bridges/outbox.py.) No
agent imports an adapter: the worker (orchestrator/worker.py) binds the real ones with
`bind(...)` before it starts, a test binds its fakes the same way, and an agent that runs
before anything was bound fails with a line saying so.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, cast

__all__ = ["PORTS", "PartnerLookup", "Ports", "SnapshotVersions", "bind", "bound"]


class PartnerLookup(Protocol):
    def lookup(self, partner_id: str) -> Any:
        """Ask, without waiting, which partner this is; the answer comes back as an event."""


class SnapshotVersions(Protocol):
    async def versions(self, saga_ids: Sequence[str]) -> dict[str, int]:
        """The version of each saga's state PostgreSQL holds (missing: none)."""


class Ports:
    """The bound adapters; asking for one not bound is a RuntimeError saying so."""

    NAMES = ("partners", "snapshots")

    def __init__(self) -> None:
        self._bound: dict[str, Any] = {}

    def _get(self, name: str) -> Any:
        try:
            return self._bound[name]
        except KeyError:
            raise RuntimeError(f"no {name} port bound: the worker binds the adapters when it starts "
                               "(orchestrator/worker.py; a test: agents.ports.bind)") from None

    @property
    def partners(self) -> PartnerLookup:
        return cast(PartnerLookup, self._get("partners"))

    @property
    def snapshots(self) -> SnapshotVersions:
        return cast(SnapshotVersions, self._get("snapshots"))


#: The adapters the agents use, once bound.
PORTS = Ports()


def bind(**ports: Any) -> None:
    """Hand the agents their adapters: `partners=`, `snapshots=`."""
    for name, value in ports.items():
        if name not in Ports.NAMES:
            raise TypeError(f"no port {name!r}; one of {', '.join(Ports.NAMES)}")
        PORTS._bound[name] = value


@contextmanager
def bound(**ports: Any) -> Iterator[Ports]:
    """`bind(**ports)` for a block (a test), then the ports as they were."""
    before = dict(PORTS._bound)
    bind(**ports)
    try:
        yield PORTS
    finally:
        PORTS._bound = before
