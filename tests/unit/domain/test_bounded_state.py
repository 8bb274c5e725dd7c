"""A saga's state does not grow with the number of events it sees: every remembered list is
capped, and the history leaves the state with each event (the snapshot mirror keeps it)."""

from __future__ import annotations

from domain.transition import APPLIED_MEMORY, LATE_UNDONE_MEMORY
from tests.unit.domain import saga_kit as k


def _size(s: k.Saga) -> int:
    assert s.state is not None
    return len(s.state.model_dump_json())


def test_a_flood_of_events_leaves_the_state_the_same_size() -> None:
    s = k.completed()
    sizes = []
    for i in range(300):
        # A second alliance for the saga (each undone once), a stale reply, a duplicate reply.
        s.feed(k.alliance_created(f"ev-extra-{i}", alliance_id=f"extra-{i}"))
        s.feed(k.partner_reverted(f"ev-stale-{i}"), expect="ignored")
        s.feed(k.alliance_created(f"ev-dup-{i}"), expect="ignored")
        sizes.append(_size(s))
    assert s.state is not None
    assert len(s.state.applied) == APPLIED_MEMORY
    assert len(s.state.late_undone) == LATE_UNDONE_MEMORY
    assert s.state.transitions == ()  # the last event changed no status
    # Once every memory is full, the size no longer grows: only by the digits of the ids
    # and of the `ignored` counter (10-99 against 100-299).
    assert max(sizes[100:]) - min(sizes[100:]) < 64
    assert max(sizes[100:]) - max(sizes[20:100]) < 64
    assert max(sizes) < 16_000


def test_the_state_holds_only_the_last_events_transitions() -> None:
    s = k.completed()
    assert s.state is not None
    last = s.decisions[-1]
    assert s.state.transitions == last.transitions
    assert [str(t.to_status) for t in s.state.transitions] == ["alliance_created", "completed"]
