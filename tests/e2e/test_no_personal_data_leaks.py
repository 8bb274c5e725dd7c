"""No personal data in the logs or the dead letters of an end-to-end run (issue #21).

One worker runs sagas started over HTTP and by partner events, some completing and some
compensating, and meets the partner's data in bad input: a start with a bad email, a
PartnerCreated that does not validate, the same partner announced twice (a duplicate), a
message that is not JSON. An operator reads and erases. Then the worker's whole log (stdout and
stderr at INFO, as deployed) and every dead letter (value and properties) are searched for each
distinctive personal value: none is there. The sealed originals are, and the worker's key
opens them: nothing was lost, and the search would have found the values had they leaked."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from domain import ids
from runtime.settings import Settings
from simulators.participants import Behaviour
from tests.support.flows import ended
from wire.cloudevents import encode_event

pytestmark = pytest.mark.stack


def a_partner(n: int, tag: str) -> dict[str, str]:
    return {"nombre": f"Quixotic{tag}{n} Name", "email": f"quix{tag}{n}@leak-check.example",
            "telefono": f"+57 999{n} {tag}", "direccion": f"Calle Quixotic {tag}{n}"}


@pytest.mark.parametrize("behaviour", [Behaviour(fail_alliance=0.5)], ids=["half-compensate"])
async def test_no_personal_value_in_logs_or_dead_letters(spawn, participants, taps, behaviour) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:8]
    partners = [a_partner(n, tag) for n in range(8)]
    worker = spawn()
    await worker.wait_ready(timeout=60)

    # Sagas over HTTP: some complete, some compensate (alianzas fails half).
    http_sagas = []
    for p in partners[:4]:
        status, body = await worker.post("/api/v1/saga/partner-creation",
                                         {**p, "correlation_id": str(uuid.uuid4())})
        assert status == 202, body
        http_sagas.append(body["saga_id"])
    # A start with a bad email: refused, the data in the caller's own answer only.
    status, body = await worker.post("/api/v1/saga/partner-creation",
                                     {**partners[4], "email": partners[4]["nombre"]})
    assert status in (400, 422), body
    # A saga opened by a partner event, then the same partner announced again (a duplicate).
    pid = str(uuid.uuid4())
    for _ in range(2):
        await participants.publish(participants.partner_events, encode_event(
            "PartnerCreated", str(uuid.uuid4()), {"partner_id": pid, **partners[5]},
            source="/gestion-de-integraciones"), pid)
    # A PartnerCreated that does not validate, and a message that is not JSON.
    await participants.publish(participants.partner_events, encode_event(
        "PartnerCreated", str(uuid.uuid4()), {"partner_id": str(uuid.uuid4()), **partners[6],
                                              "telefono": "\x01" + partners[6]["telefono"]},
        source="/gestion-de-integraciones"))
    await participants.publish(participants.partner_events,
                               f'{{"data": {{"nombre": "{partners[7]["nombre"]}", "email": '
                               f'"{partners[7]["email"]}"'.encode())

    event_saga = ids.saga_id_for_partner(pid)
    await taps["lifecycle"].wait_for(lambda t: all(s in ended(t) for s in [*http_sagas, event_saga]), 60,
                                     "every saga to end")
    await taps["dead"].wait_for(lambda t: len(t.messages) >= 3, 30, "three dead letters")
    # An operator reads a saga in clear and erases another.
    status, state = await worker.get(f"/api/v1/saga/status/{http_sagas[0]}")
    assert status == 200 and state["partner"]["email"] == partners[0]["email"]
    for _ in range(100):
        status, body = await worker.post(f"/api/v1/sagas/{http_sagas[1]}/erase")
        if status in (200, 202):
            break
        await asyncio.sleep(0.2)  # its snapshot may not show its end yet
    assert status in (200, 202), body
    await asyncio.sleep(1.0)  # the erasure and the last snapshots logged, if they log anything
    worker.stop()

    log = worker.log()
    assert "[^Worker]: Ready" in log and "dead letter from" in log, "not this worker's whole log"
    dead = taps["dead"].messages
    letters = "\n".join(bytes(m.data).decode("utf-8", "replace") + json.dumps(dict(m.properties))
                        for m in dead)
    for p in partners:
        for value in p.values():
            for text, where in ((log, "the worker's log"), (letters, "a dead letter")):
                assert value not in text and value.lower() not in text.lower(), f"{value!r} in {where}"
    # The search is not blind: the originals are kept sealed, with the personal data in them.
    sealer = Settings(DATADIR=str(worker.datadir)).dead_letter_sealer()
    originals = b"".join(sealer.unseal(m.properties["sealed"]) for m in dead if "sealed" in m.properties)
    for p in (partners[5], partners[6], partners[7]):
        assert p["nombre"].encode() in originals
