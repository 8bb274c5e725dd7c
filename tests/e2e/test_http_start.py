"""Starting a saga over HTTP: 202 with its id, then the saga runs to its end; bad requests
get a 4xx with a JSON body."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from domain import ids
from simulators.participants import Behaviour, _share
from tests.support.flows import ended
from wire.cloudevents import encode_event

pytestmark = pytest.mark.stack

BODY = {"nombre": "Acme SAS", "email": "ops@acme.example", "telefono": "+57 1 555 0101",
        "direccion": "Cra 7 # 71-21"}


def _correlation_where(predicate) -> str:  # type: ignore[no-untyped-def]
    """A correlation id whose saga the simulators treat as `predicate` says."""
    while True:
        corr = str(uuid.uuid4())
        if predicate(ids.saga_id_for_correlation(corr)):
            return corr


@pytest.fixture
def behaviour() -> Behaviour:
    return Behaviour(fail_partner=0.5, fail_alliance=0.5)


async def test_http_started_sagas_complete_fail_or_compensate(spawn, participants, taps) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    await worker.wait_ready(timeout=30)

    def partner_ok(s: str) -> bool:
        return _share(s, "fail-partner") >= 0.5

    cases = {
        "completed": _correlation_where(lambda s: partner_ok(s) and _share(s, "fail-alliance") >= 0.5),
        "failed": _correlation_where(lambda s: not partner_ok(s)),
        "compensated": _correlation_where(lambda s: partner_ok(s) and _share(s, "fail-alliance") < 0.5),
    }
    started = {}
    for want, corr in cases.items():
        status, body = await worker.post("/api/v1/saga/partner-creation", {**BODY, "correlation_id": corr})
        assert status == 202, body
        assert body["saga_id"] == ids.saga_id_for_correlation(corr)
        started[want] = body["saga_id"]
        # The same request again (a client retry) is the same saga, not a second one.
        status, again = await worker.post("/api/v1/saga/partner-creation", {**BODY, "correlation_id": corr})
        assert status == 202 and again["saga_id"] == body["saga_id"]

    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 3, 30, "3 sagas to end")
    finals = ended(taps["lifecycle"])
    assert finals[started["completed"]] == ["SagaCompleted"]
    assert finals[started["failed"]] == ["SagaFailed"]
    assert finals[started["compensated"]] == ["SagaCompensated"]
    for want, saga_id in started.items():
        status, body = await worker.get(f"/api/v1/saga/status/{saga_id}")
        assert status == 200 and body["status"] == want, body
        assert body["origin"] == "http" and body["correlation_id"] == cases[want]
    # CreatePartner carried the saga and correlation ids; the failed saga undid nothing.
    creates = [c for c in taps["integraciones"].events() if c["type"] == "CreatePartner"]
    assert {c["sagaid"] for c in creates} == set(started.values())
    corr_of = {s: cases[w] for w, s in started.items()}
    assert all(c["correlationid"] == corr_of[c["sagaid"]] for c in creates)
    reverts = {c["sagaid"] for c in taps["integraciones"].events() if c["type"] == "RevertPartner"}
    assert reverts == {started["compensated"]}
    # A start with the correlation id of a saga that ended is answered with that saga, and
    # starts nothing (issue #20: within SAGA_DEDUPE_HORIZON_S; the snapshot says it ended).
    for want, saga_id in started.items():
        for _ in range(50):
            status, again = await worker.post("/api/v1/saga/partner-creation",
                                              {**BODY, "correlation_id": cases[want]})
            if status == 200:
                break
            assert status == 202 and again["saga_id"] == saga_id  # its snapshot not written yet
            await asyncio.sleep(0.2)
        assert status == 200, again
        assert again["saga_id"] == saga_id and again["status"] == want and again["duplicate_of_finished_saga"]
    # Nothing new was sent: a start answered 202 while the snapshot lagged is a duplicate,
    # whose commands go again under the same ids (at least once), never a new command.
    assert {c["id"] for c in taps["integraciones"].events() if c["type"] == "CreatePartner"} == {
        c["id"] for c in creates}


@pytest.mark.parametrize(("raw", "status", "word"), [
    (b"{not json", 400, "JSON"),
    (b"[1, 2]", 400, "object"),
    (b'{"nombre": "x"}', 422, "email"),
    (b'{"nombre": "x", "email": "no-at-sign"}', 422, "email"),
    (b'{"nombre": "", "email": "a@b.co"}', 422, "nombre"),
    (b'{"nombre": "x", "email": "a@b.co", "unknown": 1}', 422, "unknown"),
    (b'{"nombre": "a\\u0000b", "email": "a@b.co"}', 422, "nombre"),
    (b"[" * 30_000 + b"]" * 30_000, 400, "JSON"),  # nested too deeply, yet under the size cap
    (b'{"nombre": "' + b"x" * 70_000 + b'", "email": "a@b.co"}', 413, "bytes"),  # over 64 KiB
    (b'{"nombre": "' + b"x" * 2_000_000 + b'", "email": "a@b.co"}', 413, "bytes"),  # over aiohttp's 1 MiB
])
async def test_bad_start_requests_get_a_4xx_json_error(spawn, raw: bytes, status: int, word: str) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    await worker.wait_ready(timeout=30)
    got, body = await worker.post("/api/v1/saga/partner-creation", raw=raw)
    assert got == status
    assert isinstance(body, dict) and "error" in body
    assert word.lower() in str(body).lower()


async def test_status_of_an_unknown_saga_is_a_404_json(spawn) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    await worker.wait_ready(timeout=30)
    status, body = await worker.get(f"/api/v1/saga/status/{uuid.uuid4()}")
    assert status == 404 and body["error"] == "no such saga"


@pytest.mark.parametrize("behaviour", [Behaviour(no_reply_alliance=1.0)], ids=["alianzas-silent"])
async def test_a_reply_naming_only_its_partner_finds_an_http_started_saga(
        spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    """The bridge sends a reply that names only a partner to the partner's own saga first; for
    an HTTP-started saga that one does not exist, and the partner index finds the right one."""
    worker = spawn()
    await worker.wait_ready(timeout=30)
    status, body = await worker.post("/api/v1/saga/partner-creation", BODY)
    assert status == 202, body
    saga_id = body["saga_id"]
    await taps["alianzas"].wait_for(lambda t: any(e["sagaid"] == saga_id for e in t.events()), 30,
                                    "CreateAlliance")
    partner_id = next(e for e in taps["alianzas"].events() if e["sagaid"] == saga_id)["data"]["partner_id"]
    # As gestion-de-alianzas might answer: no sagaid, no correlationid.
    reply = encode_event("AllianceCreated", str(uuid.uuid4()),
                         {"partner_id": partner_id, "alliance_id": "a-1"}, source="/gestion-de-alianzas")
    await participants.publish(participants.alliance_events, reply)
    await taps["lifecycle"].wait_for(lambda t: saga_id in ended(t), 30, "the saga to end")
    assert ended(taps["lifecycle"])[saga_id] == ["SagaCompleted"]
    status, state = await worker.get(f"/api/v1/saga/status/{saga_id}")
    assert status == 200 and state["alliance_id"] == "a-1"
    assert ids.saga_id_for_partner(partner_id) != saga_id
