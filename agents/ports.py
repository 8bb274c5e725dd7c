"""What the agents need from the adapters, declared here and handed over by the composition root.

The agents send commands (`Outbound`: bridges/pulsar_outbound.py), ask integraciones about a
partner (`PartnerLookup`: bridges/alpes.py) and ask which saga versions PostgreSQL holds
(`SnapshotVersions`: snapshots/store.py). No agent imports an adapter: the worker
(orchestrator/worker.py) binds the real ones with `bind(...)` before it starts, a test binds
its fakes the same way, and an agent that runs before anything was bound fails with a line
saying so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, cast

from domain.messages import Command
from wire.outgoing import Outgoing

__all__ = ["PORTS", "Outbound", "PartnerLookup", "Ports", "SnapshotVersions", "bind", "bound"]


class Outbound(Protocol):
    def encode(self, commands: Sequence[Command]) -> list[Outgoing]:
        """The messages of `commands`, made before the saga's new state is stored."""

    async def send(self, commands: Sequence[Command], items: list[Outgoing],
                   ack: Callable[[], Awaitable[object]]) -> None:
        """Hand `items` over; `ack` runs once each is sent or dead-lettered."""


class PartnerLookup(Protocol):
    def lookup(self, partner_id: str) -> Any:
        """Ask, without waiting, which partner this is; the answer comes back as an event."""


class SnapshotVersions(Protocol):
    async def versions(self, saga_ids: Sequence[str]) -> dict[str, int]:
        """The version of each saga's state PostgreSQL holds (missing: none)."""


class Ports:
    """The bound adapters; asking for one not bound is a RuntimeError saying so."""

    NAMES = ("outbound", "partners", "snapshots")

    def __init__(self) -> None:
        self._bound: dict[str, Any] = {}

    def _get(self, name: str) -> Any:
        try:
            return self._bound[name]
        except KeyError:
            raise RuntimeError(f"no {name} port bound: the worker binds the adapters when it starts "
                               "(orchestrator/worker.py; a test: agents.ports.bind)") from None

    @property
    def outbound(self) -> Outbound:
        return cast(Outbound, self._get("outbound"))

    @property
    def partners(self) -> PartnerLookup:
        return cast(PartnerLookup, self._get("partners"))

    @property
    def snapshots(self) -> SnapshotVersions:
        return cast(SnapshotVersions, self._get("snapshots"))


#: The adapters the agents use, once bound.
PORTS = Ports()


def bind(**ports: Any) -> None:
    """Hand the agents their adapters: `outbound=`, `partners=`, `snapshots=`."""
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
