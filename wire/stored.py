"""What the orchestrator stores, each form with its schema version.

Stored forms: the `sagas` table's values and changelog (a saga's state, or the tombstone
retention leaves), the partner index (`partner-sagas`: a partner's or an email's saga, or the
events parked while the partner is looked up), the outbox records, the deadline and retention
index entries, and the snapshot rows (whose `state` column holds a saga's stored state).

Every stored JSON object ends with its schema version: `{...,"sv":2}`. A value without one is
version 1: what every release up to 0.3.0 wrote (e382d37's fixtures in tests/fixtures/
stored-v1 are read by a test, forever). A form reads every version it was ever written in:
its upcasters take a version's value to the next one's, in turn, up to the current version,
and only then is the value validated (as eventsourcing's upcasting does). A value of a newer
version than this code knows is refused with `UnknownSchema` (a worker of an older release
must not guess at it): a release that changes a form ships its reader first (see
docs/upgrades.md).

Reading the current version costs one `endswith` beside the JSON parse; writing, one copy of
the bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from domain.lifecycle import Tombstone
from domain.state import SagaState
from wire.internal import OutboxEntry

__all__ = ["FORMS", "INDEXED_SAGA", "OUTBOX", "PARKED", "SAGA_STATE", "TOMBSTONE", "Form", "IndexedSaga",
           "ParkedEvents", "UnknownSchema", "register", "schema_of", "stamp", "strip"]

M = TypeVar("M", bound=BaseModel)

_SV = re.compile(rb',"sv":(\d+)}\s*$')

#: An upcaster takes a value of its version to the next: for version 1 from the stored bytes,
#: later ones from the decoded object (a dict).
Upcaster = Callable[[Any], dict[str, Any]]


class UnknownSchema(ValueError):
    """A stored value of a schema version this code does not know (a newer release's)."""


def schema_of(raw: bytes) -> int:
    """The schema version of a stored value: its trailing `"sv"`, or 1 without one."""
    found = _SV.search(raw[-24:])
    return int(found.group(1)) if found else 1


def stamp(doc: bytes, version: int) -> bytes:
    """A JSON object's bytes with `"sv": version` as its last member."""
    if not doc.endswith(b"}") or not doc.startswith(b"{"):
        raise ValueError("only a JSON object can carry a schema version")
    if doc == b"{}":
        return b'{"sv":%d}' % version
    return doc[:-1] + b',"sv":%d}' % version


def strip(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A decoded stored object without its schema version."""
    return {k: v for k, v in doc.items() if k != "sv"}


def _json(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"a stored value is not a JSON object: {raw[:40]!r}")
    return value


class Form(Generic[M]):
    """One stored form: its model, its current version, and an upcaster from each older one."""

    def __init__(self, name: str, model: type[M], version: int,
                 upcasters: Mapping[int, Upcaster] | None = None, *,
                 writes: Callable[[M], bytes] | None = None) -> None:
        """`writes`: how values are written while the previous release cannot read the current
        version yet (the first of the two steps in docs/upgrades.md); by default, the current
        version."""
        self.name, self.model, self.version = name, model, version
        self._writes = writes
        self.upcasters = dict(upcasters or {})
        missing = [v for v in range(1, version) if v not in self.upcasters]
        if missing:
            raise ValueError(f"stored form {name!r} has no upcaster from version(s) {missing}")
        self._suffix = b',"sv":%d}' % version

    def dump(self, value: M) -> bytes:
        if self._writes is not None:
            return self._writes(value)
        return stamp(value.model_dump_json().encode(), self.version)

    def load(self, raw: bytes) -> M:
        """A stored value of any version this code knows, as the current model."""
        if raw.endswith(self._suffix):
            return self.model.model_validate_json(raw)  # "sv" is ignored (extra="ignore")
        version = schema_of(raw)
        return self._upcast(raw if version == 1 else _json(raw), version)

    def load_doc(self, doc: Mapping[str, Any]) -> M:
        """A stored value already decoded (a snapshot row's `state`), of any known version."""
        version = int(doc.get("sv", 1))
        return self._upcast(strip(doc) if version == 1 else dict(doc), version)

    def upgrade(self, raw: bytes) -> bytes:
        """The value as this release writes it (the same bytes when it is)."""
        return raw if raw.endswith(self._suffix) else self.dump(self.load(raw))

    def _upcast(self, value: Any, version: int) -> M:
        if version > self.version:
            raise UnknownSchema(f"a stored {self.name} of schema version {version}: this release reads "
                                f"versions 1 to {self.version} (a newer release wrote it; see "
                                f"docs/upgrades.md)")
        for v in range(version, self.version):
            value = self.upcasters[v](value)
        if isinstance(value, dict):
            value = strip(value)
        return self.model.model_validate(value)


def json_v1(raw: bytes | dict[str, Any]) -> dict[str, Any]:
    """Version 1 to 2 of a form whose JSON did not change but for the version (fields added
    since have defaults): the object as it is."""
    return raw if isinstance(raw, dict) else _json(raw)


#: Every form by name (for docs and tests; each module imports its own).
FORMS: dict[str, Form[Any]] = {}


def register(form: Form[M]) -> Form[M]:
    FORMS[form.name] = form
    return form


# The forms. Version 2 (release 0.4.0) added the version itself; nothing else changed, so
# each upcaster from 1 takes the value as it is (the fields added before it have defaults).

class IndexedSaga(BaseModel):
    """The partner index's answer for a partner (or an `email:` claim): its saga."""

    saga_id: str


class ParkedEvents(BaseModel):
    """The partner index's entry for a partner being looked up (stored after the `~` that
    marks it): since when, and the events parked meanwhile (wire.internal.PartnerRouted's)."""

    since: float
    parked: list[dict[str, Any]]


def _outbox_v1(raw: bytes) -> dict[str, Any]:
    # Version 1: {"commands": [...]}, or before dcd47dd one command alone.
    value = _json(raw)
    return value if "commands" in value else {"commands": [value]}


def _indexed_v1(raw: bytes) -> dict[str, Any]:
    # Version 1: the saga id's bytes as they are.
    return {"saga_id": raw.decode()}


SAGA_STATE = register(Form("saga state", SagaState, 2, {1: json_v1}))
TOMBSTONE = register(Form("tombstone", Tombstone, 2, {1: json_v1}))
OUTBOX = register(Form("outbox record", OutboxEntry, 2, {1: _outbox_v1}))
#: Read in both versions, written in version 1 (the saga id's bytes) for now: release 0.3.0
#: reads a partner index entry as the saga id itself, so version 2 would send its workers'
#: events to no saga during a rolling upgrade. The release after 0.4.0 writes version 2.
INDEXED_SAGA = register(Form("partner index entry", IndexedSaga, 2, {1: _indexed_v1},
                             writes=lambda entry: entry.saga_id.encode()))
PARKED = register(Form("parked events", ParkedEvents, 2, {1: json_v1}))
