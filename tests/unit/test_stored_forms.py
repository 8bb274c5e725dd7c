"""Every stored form with its schema version (wire/stored.py), and the forms release 0.2.0
(e382d37) wrote, kept in tests/fixtures/stored-v1 by that commit's own code and read here by
the current code, forever: a saga stored then finishes now."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from domain import decide
from domain.definition import ALPES_PARTNER, PARTNER_CREATION
from domain.lifecycle import bury
from domain.messages import AllianceCreated, PartnerCreated
from domain.state import SagaState
from tables.deadline_index import INDEX_VERSION, DeadlineIndex, due_in_db
from wire.internal import PartnerRouted
from wire.stored import (
    FORMS,
    INDEXED_SAGA,
    PARKED,
    SAGA_STATE,
    TOMBSTONE,
    IndexedSaga,
    UnknownSchema,
    schema_of,
    stamp,
)

V1 = Path(__file__).parents[1] / "fixtures" / "stored-v1"


def _v1(name: str) -> bytes:
    return (V1 / name).read_bytes()


def test_the_fixtures_are_e382d37s() -> None:
    assert (V1 / "COMMIT").read_text().startswith("e382d37")
    assert sorted(p.name for p in V1.glob("state-*.json")) == [
        "state-alpes-waiting.json", "state-compensated.json", "state-completed.json", "state-failed.json",
        "state-waiting.json"]


@pytest.mark.parametrize("name,status", [
    ("state-waiting.json", "partner_creation_in_progress"), ("state-completed.json", "completed"),
    ("state-compensated.json", "compensated"), ("state-failed.json", "failed"),
    ("state-alpes-waiting.json", None)])
def test_an_e382d37_state_reads_and_is_written_back_in_the_current_version(name: str,
                                                                         status: str | None) -> None:
    raw = _v1(name)
    assert schema_of(raw) == 1
    state = SAGA_STATE.load(raw)
    assert state.model_dump(mode="json").items() >= {
        k: v for k, v in json.loads(raw).items()}.items()  # every field as it was
    assert state.generation == 1 and state.left_behind == () and state.erased_at is None  # added since
    if status is not None:
        assert state.status == status
    again = SAGA_STATE.dump(state)
    assert schema_of(again) == SAGA_STATE.version == 2 and SAGA_STATE.load(again) == state
    assert SAGA_STATE.upgrade(raw) == again and SAGA_STATE.upgrade(again) is again


def test_an_e382d37_saga_in_flight_finishes_under_the_current_code() -> None:
    waiting = SAGA_STATE.load(_v1("state-waiting.json"))
    reply = PartnerCreated(event_id="e-created-now", saga_id=waiting.saga_id, partner_id="p-9")
    created = decide(waiting, reply, waiting.updated_at + 1, PARTNER_CREATION)
    assert created.outcome == "applied" and created.state is not None
    done = decide(created.state, AllianceCreated(event_id="e-alliance-now", saga_id=waiting.saga_id,
                                                 partner_id="p-9", alliance_id="a-9"),
                  waiting.updated_at + 2, PARTNER_CREATION)
    assert done.outcome == "applied" and done.state is not None and done.state.status == "completed"
    alpes = SAGA_STATE.load(_v1("state-alpes-waiting.json"))
    assert alpes.flow == ALPES_PARTNER.name and alpes.deadline is not None


def test_an_e382d37_snapshot_row_reads() -> None:
    doc = json.loads(_v1("snapshot-state-completed.json"))  # jsonb: keys reordered, no "sv"
    assert SAGA_STATE.load_doc(doc) == SAGA_STATE.load(_v1("state-completed.json"))
    current = json.loads(SAGA_STATE.dump(SAGA_STATE.load_doc(doc)))
    assert current["sv"] == 2 and SAGA_STATE.load_doc(current) == SAGA_STATE.load_doc(doc)


def test_e382d37_partner_index_entries_read() -> None:
    saga = INDEXED_SAGA.load(_v1("partner-index-saga.bin"))
    assert saga.saga_id == SAGA_STATE.load(_v1("state-completed.json")).saga_id
    assert INDEXED_SAGA.load(INDEXED_SAGA.dump(saga)) == saga
    # Written as 0.3.0 reads it (its saga id), until the next release; version 2 reads too.
    assert INDEXED_SAGA.dump(IndexedSaga(saga_id="s-1")) == b"s-1"
    assert INDEXED_SAGA.load(b'{"saga_id":"s-1","sv":2}') == IndexedSaga(saga_id="s-1")
    pending = _v1("partner-index-pending.bin")
    assert pending.startswith(b"~")
    parked = PARKED.load(pending[1:])
    assert parked.since == 1_780_000_000.0
    assert [PartnerRouted.model_validate(m).event_id for m in parked.parked] == ["e-parked"]
    assert PARKED.load(PARKED.dump(parked)) == parked


def test_an_index_an_older_version_built_is_built_again(tmp_path: Path) -> None:
    old = json.loads(_v1("deadline-index-entry.json"))
    waiting = _v1("state-waiting.json")
    saga_id = SAGA_STATE.load(waiting).saga_id
    (tmp_path / "index").mkdir()
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    db = Rdict(str(tmp_path / "index" / "0.db"), options)
    db[old["key"].encode()] = old["value"].encode()
    db[b"9999999999:gone"] = b'{"saga_id": "gone"}'  # an entry of that version, for no state now
    db[b"~built"] = b"1"
    db.close()
    index = DeadlineIndex(tmp_path / "index", lambda p: {saga_id.encode(): waiting})
    rebuilt = index.db(0)
    assert rebuilt[b"~built"] == b"%d" % INDEX_VERSION
    keys = [k for k in rebuilt.keys() if k != b"~built"]
    assert keys == [old["key"].encode()]  # the waiting saga's entry, from its state
    assert schema_of(rebuilt[keys[0]]) == INDEX_VERSION
    due = list(due_in_db(rebuilt, now=2e9))
    assert [(k, f["saga_id"], f["step"]) for k, f in due if f] == [(keys[0], saga_id, "create_partner")]
    index.close()


def test_a_tombstone_of_either_version_reads() -> None:
    state = SAGA_STATE.load(_v1("state-completed.json"))
    tomb = bury(state, time.time())
    assert TOMBSTONE.load(tomb.model_dump_json().encode()) == tomb  # version 1 (0.2.x after #20)
    stored = TOMBSTONE.dump(tomb)
    assert stored.startswith(b'{"tombstone":true') and TOMBSTONE.load(stored) == tomb


def test_a_newer_version_is_refused_with_the_versions_named() -> None:
    raw = SAGA_STATE.dump(SAGA_STATE.load(_v1("state-completed.json"))).replace(b'"sv":2}', b'"sv":7}')
    with pytest.raises(UnknownSchema, match="saga state of schema version 7: this release reads versions 1"):
        SAGA_STATE.load(raw)
    with pytest.raises(UnknownSchema):
        SAGA_STATE.load_doc({**json.loads(raw)})


def test_every_form_has_an_upcaster_from_each_older_version() -> None:
    assert set(FORMS) == {"saga state", "tombstone", "outbox record", "partner index entry", "parked events"}
    for form in FORMS.values():
        assert sorted(form.upcasters) == list(range(1, form.version))
    assert stamp(b"{}", 2) == b'{"sv":2}' and stamp(b'{"a":1}', 3) == b'{"a":1,"sv":3}'
    with pytest.raises(ValueError):
        stamp(b"[1]", 2)


def test_the_current_version_is_read_without_the_upcasters(monkeypatch: pytest.MonkeyPatch) -> None:
    state = SAGA_STATE.load(_v1("state-waiting.json"))
    monkeypatch.setattr(SAGA_STATE, "upcasters", {})  # the current version needs none
    assert SAGA_STATE.load(SAGA_STATE.dump(state)) == state
    assert isinstance(state, SagaState)
