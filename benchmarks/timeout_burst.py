"""Benchmark: how late a burst of timed-out sagas compensates (make bench-timeouts).

One orchestrator worker (a subprocess, as deployed) with SAGA_CREATE_ALLIANCE_TIMEOUT_S=2 and
SAGA_MAX_ATTEMPTS=2; the participant simulators in this process, alianzas never answering
(Behaviour(no_reply_alliance=1.0)); N sagas started at once by PartnerCreated events, so their
deadlines fall as close together as the worker starts them (the spread is printed). Each saga
sends CreateAlliance twice (2 s apart plus the timer's delay), then gives up and compensates:
CancelAlliance first (the alliance may exist, only its replies lost), then RevertPartner.

Lag of a saga = when its compensation's first command (CancelAlliance) reached a tap on
alianzas' command topic - its last attempt's deadline (that CreateAlliance's CloudEvents
`time`, which the worker stamps when it sends the command, + the timeout). Prints p50, p99 and
max; the target is p99 <= 1 s. The run also checks what the e2e test checks: every saga
compensated exactly once, two CreateAlliance ids, one CancelAlliance and one RevertPartner
each; a run that fails this prints no figures and exits non-zero.

    uv run python -m benchmarks.timeout_burst [--sagas 500] [--json PATH]   (make bench-timeouts)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.report import add_json_arg, finish_run, percentile, write_json
from simulators.participants import Behaviour, Participants
from tests.support.flows import by_type, ended, partner_created
from tests.support.pulsar import Tap, connect
from tests.support.stack import PULSAR_URL, require_stack
from tests.support.worker import Names, Worker

TARGET_P99_S = 1.0


def _ce_time(ce: dict[str, Any]) -> float:
    return datetime.fromisoformat(ce["time"].replace("Z", "+00:00")).timestamp()


def _ids_per_saga(commands: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for c in commands:
        out.setdefault(c["sagaid"], set()).add(c["id"])
    return out


async def _publish_at_once(sims: Participants, count: int) -> None:
    producer = sims._producers[sims.partner_events]
    ids = [str(uuid.uuid4()) for _ in range(count)]
    await asyncio.gather(*(producer.send(partner_created(pid, n), partition_key=pid)
                           for n, pid in enumerate(ids)))


async def measure(sagas: int, timeout_s: float, attempts: int, within_s: float) -> dict[str, Any]:
    require_stack()
    names = Names()
    folder = Path(tempfile.mkdtemp(prefix="bench-timeouts-"))
    worker = Worker(names, folder / "data", env={"SAGA_CREATE_ALLIANCE_TIMEOUT_S": f"{timeout_s:g}",
                                                 "SAGA_MAX_ATTEMPTS": str(attempts)}).start()
    sims = Participants(PULSAR_URL, Behaviour(no_reply_alliance=1.0),
                        integraciones_commands=names.integraciones_commands,
                        alianzas_commands=names.alianzas_commands, partner_events=names.partner_events,
                        alliance_events=names.alliance_events)
    client = connect(PULSAR_URL)
    taps: list[Tap] = []
    failed = True
    try:
        await worker.wait_ready(timeout=120)
        await sims.start()
        lifecycle, alianzas, integraciones = taps = [
            await Tap(client, t).start()
            for t in (names.lifecycle, names.alianzas_commands, names.integraciones_commands)]
        t0 = time.monotonic()
        await _publish_at_once(sims, sagas)
        await lifecycle.wait_for(lambda t: len(ended(t)) == sagas, within_s, f"{sagas} sagas to compensate")
        await integraciones.wait_for(
            lambda t: len(_ids_per_saga(by_type(t).get("RevertPartner", []))) == sagas, 60,
            "a RevertPartner for each saga")
        await alianzas.wait_for(
            lambda t: sum(map(len, _ids_per_saga(by_type(t).get("CreateAlliance", [])).values()))
            >= attempts * sagas, 60, f"{attempts} CreateAlliance attempts for each saga")
        wall = time.monotonic() - t0

        finals = ended(lifecycle)
        creates = _ids_per_saga(by_type(alianzas)["CreateAlliance"])
        reverts = _ids_per_saga(by_type(integraciones)["RevertPartner"])
        wrong = [s for s, types in finals.items() if types != ["SagaCompensated"]]
        if wrong or len(finals) != sagas:
            raise AssertionError(f"{len(wrong)} sagas did not end compensated exactly once "
                                 f"(e.g. {wrong[:1]} {finals.get(wrong[0]) if wrong else ''})")
        if len(creates) != sagas or any(len(ids) != attempts for ids in creates.values()):
            raise AssertionError(f"not {attempts} CreateAlliance ids for each of the {sagas} sagas")
        if len(reverts) != sagas or any(len(ids) != 1 for ids in reverts.values()):
            raise AssertionError(f"not exactly one RevertPartner id for each of the {sagas} sagas")
        cancels = _ids_per_saga(by_type(alianzas).get("CancelAlliance", []))
        if len(cancels) != sagas or any(len(ids) != 1 for ids in cancels.values()):
            raise AssertionError(f"not exactly one CancelAlliance id for each of the {sagas} sagas")

        first_attempt: dict[str, float] = {}
        last_attempt: dict[str, float] = {}
        for c in by_type(alianzas)["CreateAlliance"]:
            s, at = c["sagaid"], _ce_time(c)
            first_attempt[s] = min(first_attempt.get(s, at), at)
            last_attempt[s] = max(last_attempt.get(s, 0.0), at)
        undo_arrived: dict[str, float] = {}
        for m in alianzas.messages:
            ce = m.json()
            if ce["type"] == "CancelAlliance":
                undo_arrived.setdefault(ce["sagaid"], m.at)  # the first copy, if re-sent
        lags = sorted(undo_arrived[s] - (last_attempt[s] + timeout_s) for s in undo_arrived)
        last_deadlines = sorted(last_attempt[s] + timeout_s for s in last_attempt)
        first_deadlines = sorted(first_attempt[s] + timeout_s for s in first_attempt)
        failed = False
        return {
            "benchmark": "timeout_burst", "sagas": sagas, "timeout_s": timeout_s, "max_attempts": attempts,
            "wall_s": wall,
            "first_deadlines_spread_s": first_deadlines[-1] - first_deadlines[0],
            "last_deadlines_spread_s": last_deadlines[-1] - last_deadlines[0],
            "lag_s": {"p50": percentile(lags, 0.5), "p99": percentile(lags, 0.99), "max": lags[-1],
                      "min": lags[0]},
            "target_p99_s": TARGET_P99_S,
            "lags_s": [round(x, 4) for x in lags],
        }
    finally:
        for tap in taps:
            await tap.stop()
        await sims.stop()
        await client.close()
        await finish_run(worker, folder, names.app_id, failed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sagas", type=int, default=500)
    p.add_argument("--timeout-s", type=float, default=2.0, help="SAGA_CREATE_ALLIANCE_TIMEOUT_S")
    p.add_argument("--attempts", type=int, default=2, help="SAGA_MAX_ATTEMPTS")
    p.add_argument("--within-s", type=float, default=300.0,
                   help="give up when the sagas have not all compensated after this long")
    add_json_arg(p)
    args = p.parse_args()
    f = asyncio.run(measure(args.sagas, args.timeout_s, args.attempts, args.within_s))
    lag = f["lag_s"]
    print(f"timeout burst: {f['sagas']} silent sagas (alianzas never answer), timeout {f['timeout_s']:g}s, "
          f"{f['max_attempts']} attempts; all compensated exactly once in {f['wall_s']:.1f}s")
    print(f"deadlines spread over: first attempts {f['first_deadlines_spread_s']:.2f}s, "
          f"last attempts {f['last_deadlines_spread_s']:.2f}s"
          + ("" if f["last_deadlines_spread_s"] <= 1.0 else
             " (more than 1 s: the worker took that long to start the sagas)"))
    met = "met" if lag["p99"] <= TARGET_P99_S else "NOT met"
    print(f"Compensation (CancelAlliance) lag after the last attempt's deadline: p50 {lag['p50']:.3f}s, "
          f"p99 {lag['p99']:.3f}s, max {lag['max']:.3f}s  (target p99 <= {TARGET_P99_S:g}s: {met})")
    write_json(args.json, f)


if __name__ == "__main__":
    main()
