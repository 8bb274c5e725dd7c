"""The Alpes bridge's calls (bridges/alpes.py, issue #20): one saga's commands carried out in
the order the saga decided them while other sagas' run alongside, a bounded number at once
with back-pressure and nothing dropped, and every retry loop within its policy's budget."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from functools import partial
from typing import Any

import pulsar
import pytest
from aiohttp import web

import bridges.alpes as alpes
import bridges.pulsar_inbound as inbound
from bridges.alpes import AlpesCalls, OrderedCalls
from common import retry
from domain.messages import Command, Destination
from runtime.metrics import METRICS
from wire.alpes import COMANDO_CREAR_PARTNER_DEFINITION

# common/retry.py builds tenacity's wait_exponential_jitter with `initial=`, which tenacity
# 9.1 deprecates (pyproject turns warnings into errors): every Policy.wait() would fail here.


def command(saga: str, type_: str = "CreatePartner", attempt: int = 1, **data: Any) -> Command:
    return Command(command_id=f"{saga}:{type_}:{attempt}", saga_id=saga, correlation_id=f"c-{saga}",
                   destination=Destination.INTEGRACIONES, type=type_, attempt=attempt,
                   data={"email": f"{saga}@example.com", **data})


class Recorder:
    """Stands in for AlpesCalls' _create/_delete: records when each call starts and ends; a
    call waits `hold[saga, type]` seconds (0 by default)."""

    def __init__(self, expect: int) -> None:
        self.log: list[tuple[str, str, str]] = []  # (start|end, saga, type)
        self.hold: dict[tuple[str, str], float] = {}
        self.running = 0
        self.peak = 0
        self.expect = expect
        self.all_done = asyncio.Event()

    def bind(self, calls: AlpesCalls) -> AlpesCalls:
        calls._create = self._call  # type: ignore[method-assign]
        calls._delete = self._call  # type: ignore[method-assign]
        return calls

    async def _call(self, cmd: Command) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.log.append(("start", cmd.saga_id, cmd.type))
        await asyncio.sleep(self.hold.get((cmd.saga_id, cmd.type), 0.0))
        self.log.append(("end", cmd.saga_id, cmd.type))
        self.running -= 1
        if sum(1 for what, _, _ in self.log if what == "end") >= self.expect:
            self.all_done.set()

    def at(self, what: str, saga: str, type_: str) -> int:
        return self.log.index((what, saga, type_))


# --- one saga's commands in order, sagas side by side ---------------------------------------------


async def test_an_undo_waits_for_its_sagas_create_while_other_sagas_go_ahead() -> None:
    rec = Recorder(expect=3)
    calls = rec.bind(AlpesCalls())
    rec.hold[("a", "CreatePartner")] = 0.3  # still retrying when the saga decides to undo
    calls.dispatch(command("a"))
    calls.dispatch(command("a", "DeletePartner"))
    calls.dispatch(command("b"))
    await asyncio.wait_for(rec.all_done.wait(), 5)
    assert rec.at("end", "a", "CreatePartner") < rec.at("start", "a", "DeletePartner")
    assert rec.at("start", "b", "CreatePartner") < rec.at("end", "a", "CreatePartner")  # b did not wait


async def test_each_saga_gets_its_commands_in_the_order_decided() -> None:
    rec = Recorder(expect=30)
    calls = rec.bind(AlpesCalls())
    for saga in ("s1", "s2", "s3"):
        rec.hold[(saga, "CreatePartner")] = 0.02
    for attempt in range(1, 6):  # interleaved: s1 #1, s2 #1, s3 #1, s1 #2, ...
        for saga in ("s1", "s2", "s3"):
            calls.dispatch(command(saga, attempt=attempt))
            calls.dispatch(command(saga, "DeletePartner", attempt=attempt))
    await asyncio.wait_for(rec.all_done.wait(), 5)
    for saga in ("s1", "s2", "s3"):
        mine = [(what, type_) for what, s, type_ in rec.log if s == saga]
        assert mine == [(w, t) for _ in range(5) for t in ("CreatePartner", "DeletePartner")
                        for w in ("start", "end")]  # one at a time, in order


# --- bounded, with back-pressure, nothing dropped -------------------------------------------------


async def test_at_most_max_running_calls_at_once_and_none_dropped() -> None:
    rec = Recorder(expect=100)
    calls = rec.bind(AlpesCalls(max_running=4, max_waiting=1000))
    for n in range(100):
        rec.hold[(f"s{n}", "CreatePartner")] = 0.01
        calls.dispatch(command(f"s{n}"))
    await asyncio.sleep(0)  # the first four start
    assert calls.calls.running == 4 and calls.calls.waiting == 96
    assert METRICS.gauges["alpes_calls_waiting"] == 96 and METRICS.gauges["alpes_calls_running"] == 4
    await asyncio.wait_for(rec.all_done.wait(), 10)
    assert rec.peak == 4
    assert sorted(s for what, s, _ in rec.log if what == "end") == sorted(f"s{n}" for n in range(100))
    await calls.calls.idle()
    assert METRICS.gauges["alpes_calls_waiting"] == 0 and METRICS.gauges["alpes_calls_running"] == 0


async def test_the_default_bound_holds_a_burst_of_sagas() -> None:
    rec = Recorder(expect=200)
    calls = rec.bind(AlpesCalls())
    for n in range(200):
        rec.hold[(f"b{n}", "CreatePartner")] = 0.01
        calls.dispatch(command(f"b{n}"))
    await asyncio.wait_for(rec.all_done.wait(), 10)
    assert rec.peak == 32 == alpes.cfg.alpes_max_concurrent_calls


async def test_a_busy_saga_takes_turns_with_sagas_waiting_for_a_slot() -> None:
    rec = Recorder(expect=4)
    calls = rec.bind(AlpesCalls(max_running=1, max_waiting=100))
    for n in range(3):
        calls.dispatch(command("busy", attempt=n + 1))
    calls.dispatch(command("other"))
    await asyncio.wait_for(rec.all_done.wait(), 5)
    order = [s for what, s, _ in rec.log if what == "start"]
    assert order == ["busy", "other", "busy", "busy"]  # its slot went to the next in line


async def test_dispatch_holds_the_caller_back_past_max_waiting() -> None:
    gate = asyncio.Event()
    ran: list[str] = []

    async def call(name: str) -> None:
        await gate.wait()
        ran.append(name)

    q = OrderedCalls(max_running=1, max_waiting=2)
    admitted = [q.submit(f"k{n}", f"call {n}", partial(call, f"k{n}")) for n in range(5)]
    await asyncio.sleep(0)  # the first call starts: 4 wait
    assert [f.done() for f in admitted] == [True, True, True, False, False]
    assert q.held_back == 2
    gate.set()
    await asyncio.wait_for(asyncio.gather(*admitted), 5)  # released as the backlog shrank
    await q.idle()
    assert ran == [f"k{n}" for n in range(5)]


async def test_a_failing_call_is_logged_by_name_and_its_sagas_next_call_goes_ahead(
        caplog: pytest.LogCaptureFixture) -> None:
    done: list[str] = []

    async def boom() -> None:
        raise RuntimeError("integraciones exploded")

    async def after() -> None:
        done.append("after")

    q = OrderedCalls(max_running=2, max_waiting=10)
    with caplog.at_level(logging.ERROR, logger="bridges.alpes"):
        q.submit("saga:x", "alpes CreatePartner of saga x", boom)
        q.submit("saga:x", "alpes DeletePartner of saga x", after)
        await asyncio.wait_for(q.idle(), 5)
    assert done == ["after"]
    assert "alpes CreatePartner of saga x failed: RuntimeError('integraciones exploded')" in caplog.text


async def test_a_lookup_already_waiting_for_the_same_partner_is_not_queued_twice() -> None:
    calls = AlpesCalls(max_running=1, max_waiting=10)
    looked: list[str] = []
    gate = asyncio.Event()

    async def fake_lookup(partner_id: str) -> None:
        await gate.wait()
        looked.append(partner_id)

    calls._lookup = fake_lookup  # type: ignore[method-assign]
    calls.lookup("p1")  # starts, held at the gate
    await asyncio.sleep(0)
    calls.lookup("p1")  # waits behind it
    calls.lookup("p1")  # the same as the one waiting: not added
    calls.lookup("p2")
    gate.set()
    await asyncio.wait_for(calls.calls.idle(), 5)
    assert sorted(looked) == ["p1", "p1", "p2"]


async def test_closing_cancels_the_running_calls_and_lets_held_back_callers_go() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    q = OrderedCalls(max_running=1, max_waiting=0)
    q.submit("a", "a", forever)
    held = q.submit("b", "b", forever)
    await started.wait()
    assert not held.done() and q.running == 1 and q.waiting == 1
    await q.close()
    assert held.done() and (q.running, q.waiting) == (0, 0)
    await asyncio.wait_for(q.idle(), 1)


# --- every retry within its policy's budget ---------------------------------------------------


def settings(monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    """The Alpes bridge's settings with `changes` (the settings object is frozen)."""
    monkeypatch.setattr(alpes, "cfg", alpes.cfg.model_copy(update=changes))


@pytest.fixture
def fast_policies(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("participant-http", "participant-pulsar", "partner-lookup", "bridge-restart"):
        monkeypatch.setitem(retry.POLICIES, name,
                            replace(retry.POLICIES[name], initial_s=0.02, max_s=0.05, budget_s=0.5))
    yield


@pytest.fixture
async def always_500(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[str]]:
    """integraciones answering 500 to everything; yields the requests it got."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response({"codigo": "ERROR_INTERNO"}, status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    settings(monkeypatch, integraciones_api_url=f"http://127.0.0.1:{runner.addresses[0][1]}")
    yield seen
    await runner.cleanup()


async def test_http_tries_stop_at_the_participant_http_budget(  # type: ignore[no-untyped-def]
        fast_policies, always_500, monkeypatch: pytest.MonkeyPatch) -> None:
    settings(monkeypatch, http_attempts=20)
    calls = AlpesCalls()
    status, _, unsure = await calls._call("GET", "/api/v1/partners")
    assert (status, unsure) == (500, True)
    assert 2 <= len(always_500) < 20  # the budget (0.5 s) stopped it, not the 20 tries
    if calls._session is not None:
        await calls._session.close()


async def test_http_tries_stop_at_participant_http_attempts(  # type: ignore[no-untyped-def]
        fast_policies, always_500, monkeypatch: pytest.MonkeyPatch) -> None:
    settings(monkeypatch, http_attempts=2)
    calls = AlpesCalls()
    assert (await calls._call("GET", "/api/v1/partners"))[0] == 500
    assert len(always_500) == 2
    if calls._session is not None:
        await calls._session.close()


async def test_a_lookup_gives_up_at_the_partner_lookup_budget(  # type: ignore[no-untyped-def]
        fast_policies, always_500, monkeypatch: pytest.MonkeyPatch) -> None:
    settings(monkeypatch, http_attempts=1)
    sent: list[Any] = []

    async def send(**kw: Any) -> Any:
        sent.append(kw)
        raise AssertionError("nothing to tell the partner index")

    monkeypatch.setattr(alpes.partner_routing, "send", send)
    calls = AlpesCalls()
    before = METRICS.counters[("alpes_calls_given_up_total", (("call", "lookup"),))]
    await asyncio.wait_for(calls._lookup("p-unknown"), 5)  # it gives up (the old one tried ~4 min)
    assert len(always_500) >= 2 and sent == []
    assert METRICS.counters[("alpes_calls_given_up_total", (("call", "lookup"),))] == before + 1
    if calls._session is not None:
        await calls._session.close()


async def test_the_avro_command_gives_up_at_the_participant_pulsar_budget(  # type: ignore[no-untyped-def]
        fast_policies, monkeypatch: pytest.MonkeyPatch) -> None:
    tries: list[int] = []

    async def send_batch(items: list[Any]) -> list[Exception | None]:
        tries.append(len(items))
        return [pulsar.PulsarException(pulsar.Result.Timeout)]

    monkeypatch.setattr(alpes.LINK, "send_batch", send_batch)
    await asyncio.wait_for(AlpesCalls()._send_avro(command("avro", nombre="A")), 5)  # gives up
    assert len(tries) >= 2


async def test_the_avro_command_is_sent_once_pulsar_takes_it(  # type: ignore[no-untyped-def]
        fast_policies, monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[Exception | None] = [pulsar.PulsarException(pulsar.Result.Timeout), None]
    sent: list[Any] = []

    async def send_batch(items: list[Any]) -> list[Exception | None]:
        sent.append(items)
        return [answers.pop(0)]

    monkeypatch.setattr(alpes.LINK, "send_batch", send_batch)
    await asyncio.wait_for(AlpesCalls()._send_avro(command("avro2", nombre="A")), 5)
    assert len(sent) == 2 and answers == []


async def test_a_failing_bridge_restarts_with_the_bridge_restart_policy(  # type: ignore[no-untyped-def]
        fast_policies, monkeypatch: pytest.MonkeyPatch) -> None:
    pumps: list[str] = []

    async def pump(topic: str) -> None:
        pumps.append(topic)
        raise ConnectionError("Pulsar away")

    monkeypatch.setattr(inbound, "pump", pump)
    with pytest.raises(ConnectionError):  # a finite budget (here 0.5 s) re-raises once spent
        await asyncio.wait_for(inbound.supervise("persistent://public/default/t"), 5)
    assert len(pumps) >= 3


def test_the_schema_of_integraciones_command_topic_is_chosen_for_its_producer() -> None:
    topic = inbound.cfg.pulsar_topic(inbound.cfg.alpes_comando_crear_partner_topic)
    info = inbound.LINK.schemas[topic].schema_info()
    assert info.schema_type().name == "AVRO" and json.loads(info.schema()) == COMANDO_CREAR_PARTNER_DEFINITION
    assert list(inbound.LINK.schemas) == [topic]  # every other topic: none (BYTES)
