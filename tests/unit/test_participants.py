"""The default participant simulators' bookkeeping (simulators/participants.py), no broker:
what a create command made is undone by the resource's id or by the commands that made it,
once, and `live_alliances` says what is left."""

from __future__ import annotations

import json
from typing import Any

from simulators.participants import Participants


def _command(cmd_id: str, ctype: str, saga_id: str, **data: object) -> dict[str, object]:
    return {"id": cmd_id, "type": ctype, "sagaid": saga_id, "correlationid": saga_id, "data": data}


def _reply(p: Participants, ce: dict[str, object]) -> dict[str, Any]:
    """The reply's data."""
    out = p._reply_for(ce)
    assert out is not None
    return dict(json.loads(out[1])["data"])


def test_an_alliance_is_cancelled_by_its_id_or_by_the_commands_that_made_it() -> None:
    p = Participants("pulsar://unused:6650")
    made: dict[int, str] = {}
    for n in range(3):
        reply = _reply(p, _command(f"create-{n}", "CreateAlliance", f"saga-{n}", partner_id=f"partner-{n}"))
        made[n] = reply["alliance_id"]
    assert {a for _, a in p.live_alliances} == set(made.values())

    by_id = _reply(p, _command("cancel-0", "CancelAlliance", "saga-0", partner_id="partner-0",
                               alliance_id=made[0]))
    assert by_id["alliance_id"] == made[0]
    # an undo that knows only the command that may have made it (its reply was lost)
    by_command = _reply(p, _command("cancel-1", "CancelAlliance", "saga-1", partner_id="partner-1",
                                    command_ids=["create-1"]))
    assert by_command["alliance_id"] == made[1]
    assert {a for _, a in p.live_alliances} == {made[2]}
    # an undo of nothing succeeds, naming nothing
    nothing = _reply(p, _command("cancel-9", "CancelAlliance", "saga-9", partner_id="partner-9",
                                 command_ids=["create-9"]))
    assert nothing["alliance_id"] is None
    assert {a for _, a in p.live_alliances} == {made[2]}


def test_a_retried_create_and_its_undo_leave_nothing_behind() -> None:
    p = Participants("pulsar://unused:6650")
    first = _reply(p, _command("create-a", "CreateAlliance", "saga-r", partner_id="partner-r"))
    again = _reply(p, _command("create-b", "CreateAlliance", "saga-r", partner_id="partner-r"))
    assert first["alliance_id"] == again["alliance_id"]  # the same alliance
    _reply(p, _command("cancel-r", "CancelAlliance", "saga-r", partner_id="partner-r",
                       alliance_id=first["alliance_id"]))
    assert p.live_alliances == set()
