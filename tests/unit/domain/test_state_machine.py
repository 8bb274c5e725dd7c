"""A model of the saga's rules, driven at random (issue #20): a Hypothesis state machine that
runs the pure domain, for both definitions, through any interleaving of participant replies
(success or failure of each step's do and undo, for the saga's partner or another one, for
its resource or an extra one), redeliveries of events already applied, late replies, deadlines
that fire (the saga's current one, an old one fired again, made-up stale ones), operator
retries and cancels, time passing, and retention (a retainable saga is buried; later events
meet its tombstone; a start after the dedupe horizon opens the key's next generation).

After every step it checks the rules that must hold whatever happened (the `@invariant`s
below). A fixed, derandomized budget runs in CI; HYPOTHESIS_PROFILE=long explores far more
(a local run: `HYPOTHESIS_PROFILE=long pytest tests/unit/domain/test_state_machine.py`; add
`--hypothesis-show-statistics` to see which statuses the examples reached).

Two defects the machine found in domain/ (issue #20) are kept at the end of the file at
their smallest, as plain tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from hypothesis import HealthCheck, note, settings
from hypothesis import event as label
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain import ids
from domain.definition import RetryPolicy, SagaDefinition, alpes_partner, partner_creation
from domain.lifecycle import Tombstone, bury, on_tombstone, opens_saga, retainable
from domain.messages import (
    PARTICIPANT_EVENT_TYPES,
    AllianceCreationFailed,
    CancelRequested,
    Command,
    ContractCreated,
    DeadlineReached,
    PartnerCreated,
    PartnerData,
    PartnerDeleted,
    RetryRequested,
    SagaEvent,
    StartSaga,
)
from domain.state import TERMINAL, Deadline, SagaState, SagaStatus
from domain.transition import APPLIED_MEMORY, Decision, decide

# --- budget ---------------------------------------------------------------------------------
_COMMON: dict[str, Any] = {
    "deadline": None,  # no timing assertions
    "database": None,  # nothing written to .hypothesis/
    "suppress_health_check": [HealthCheck.too_slow],
}
# CI (`make test`): a fixed budget, the same examples every run; about 4 s for the file
# (both definitions) on a 2-core machine, and every status of both flows is reached.
settings.register_profile("saga-state-machine", max_examples=80, stateful_step_count=50,
                          derandomize=True, **_COMMON)
# Local exploration (HYPOTHESIS_PROFILE=long): new examples every run, longer runs (minutes).
settings.register_profile("saga-state-machine-long", max_examples=2000, stateful_step_count=100,
                          derandomize=False, print_blob=True, **_COMMON)
SETTINGS = settings.get_profile("saga-state-machine-long" if os.environ.get("HYPOTHESIS_PROFILE") == "long"
                                else "saga-state-machine")

# --- the world the saga lives in ------------------------------------------------------------
CORRELATION_ID = "corr-1"
PARTNER_ID = "partner-1"
PARTNERS = (PARTNER_ID, "partner-2", None)  # None: a reply that names no partner (where it may)
RESOURCES = (1, 2, None)  # alliance-1/alliance-2, contrato c-1/c-2, or none named
PARTNER = PartnerData(nombre="Acme SA", email="ops@acme.example", telefono="+57 1 555 0100")
T0 = 1_000.0
HORIZON = 3_600.0  # retention's dedupe horizon
STEPS_OF_TIME = (0.0, 0.5, 1.0, 5.0, 30.0, 61.0, 600.0, HORIZON)
# Policies small enough that the random walk reaches every retry's end (compensation_failed
# included) in a few steps; the definitions' own defaults are the other choice.
TIGHT = {name: RetryPolicy(reply_timeout_s=5.0, max_attempts=2, backoff_s=1.0, backoff_max_s=4.0)
         for name in ("create_partner", "revert_partner", "create_alliance", "cancel_alliance",
                      "delete_partner")}
TIGHT |= {name: RetryPolicy(reply_timeout_s=5.0, max_attempts=1)
          for name in ("await_contract", "await_compliance")}
# What every decided event changes, ignored or not.
BOOKKEEPING = {"version", "updated_at", "applied", "ignored", "transitions"}
Says = Literal["do_ok", "do_failed", "undo_ok", "undo_failed"]


def _key(d: Deadline) -> tuple[str, str, str, int]:
    return d.step, d.phase, d.kind, d.attempt


def _deadline(saga_id: str, d: Deadline) -> DeadlineReached:
    """What the deadline timer (agents/deadlines.py) fires for `d`: the event id derived from
    it, and its due time."""
    eid = ids.deadline_event_id(saga_id, d.step, d.phase, d.kind, d.attempt, d.due_at)
    return DeadlineReached(event_id=eid, saga_id=saga_id, step=d.step, phase=d.phase, kind=d.kind,
                           attempt=d.attempt, due_at=d.due_at)


@dataclass
class Run:
    """What the model knows of one saga (one generation of its business key)."""

    saga_id: str
    generation: int
    # The order in which steps entered `done_steps` (maybe done ones included).
    do_order: list[str] = field(default_factory=list)
    # Steps with nothing to undo them (Step.leaves_behind) whose success the saga was told of,
    # for its partner, after it had started them: done, whether or not the saga still waited.
    # (A success that came before the saga started its step is judged when first delivered:
    # partner routing hands a saga its partner's events only once it knows the partner.)
    known_done: list[str] = field(default_factory=list)
    observed: set[str] = field(default_factory=set)  # event ids the model has judged
    # The compensation's undo commands, first sending only: (step, operator round, attempt).
    undo_seq: list[tuple[str, int, int]] = field(default_factory=list)
    # Every event delivered to it, for redeliveries.
    history: list[SagaEvent] = field(default_factory=list)
    # Every deadline the saga had, for firing one again later.
    deadlines: list[Deadline] = field(default_factory=list)


@dataclass(frozen=True)
class Decided:
    """The last event decided on a live saga: the state before, and the decision, twice."""

    before: SagaState
    event: SagaEvent
    now: float
    decision: Decision
    twin: Decision  # the same (state, event, now) decided again


class SagaMachine(RuleBasedStateMachine):
    defn: ClassVar[SagaDefinition]

    def __init__(self) -> None:
        super().__init__()
        self.d: SagaDefinition = self.defn
        self.origin: Literal["http", "partner_event"] = "http"
        self.now = T0
        self.serial = 0
        self.state: SagaState | None = None
        self.tomb: Tombstone | None = None
        self.old_tombs: list[Tombstone] = []  # earlier generations', pointing to a newer one
        self.run = Run(saga_id="", generation=0)
        self.saga_ids: list[str] = []
        self.last: Decided | None = None
        # Every command sent (all generations), by id; and any id seen with two contents.
        self.sent: dict[str, Command] = {}
        self.conflicts: list[tuple[Command, Command]] = []

    # --- helpers --------------------------------------------------------------------------
    def fresh(self, what: str) -> str:
        self.serial += 1
        return f"ev-{self.serial}-{what}"

    @property
    def live(self) -> SagaState:
        assert self.state is not None and self.tomb is None
        return self.state

    def opener(self, saga_id: str) -> SagaEvent:
        """What starts (or restarts) this saga's business key."""
        if self.origin == "http":
            return StartSaga(event_id=self.fresh("start"), saga_id=saga_id, correlation_id=CORRELATION_ID,
                             partner=PARTNER)
        return PartnerCreated(event_id=self.fresh("opening-partner"), saga_id=saga_id, partner_id=PARTNER_ID,
                              partner=PARTNER)

    def reply(self, step_name: str, says: Says, partner: str | None,
              resource: int | None) -> SagaEvent | None:
        step = self.d.step(step_name)
        action = step.do if says.startswith("do") else step.undo
        if action is None:
            return None
        event_type = action.succeeded if says.endswith("ok") else action.failed
        if event_type is None:
            return None
        model = PARTICIPANT_EVENT_TYPES[event_type]
        fields_ = model.model_fields

        def pick(name: str, value: str | None, default: str) -> str | None:
            return default if value is None and name in fields_ and fields_[name].is_required() else value

        event: SagaEvent = model(  # type: ignore[assignment]  # one of SagaEvent's participant events
            # Every participant event takes these; a model ignores the fields it does not have.
            event_id=self.fresh(event_type), saga_id=self.run.saga_id,
            partner_id=pick("partner_id", partner, PARTNER_ID),
            alliance_id=pick("alliance_id", None if resource is None else f"alliance-{resource}",
                             "alliance-1"),
            contrato_id=None if resource is None else f"c-{resource}", reason="said no",
        )
        return event

    def deliver(self, event: SagaEvent) -> None:
        self.run.history.append(event)
        if self.tomb is not None:
            self.to_tombstone(event)
            return
        note(f"{self.now}: {event!r}")
        before = self.live
        self.observe(before, event)
        d = decide(before, event, self.now, self.d)
        twin = decide(before, event, self.now, self.d)
        self.record(before, d)
        self.last = Decided(before, event, self.now, d, twin)
        if d.state is not None:  # pytest --hypothesis-show-statistics: how far the examples got
            label(f"status {d.state.status}")
            label(f"{event.type} {d.outcome}")

    def observe(self, s: SagaState, event: SagaEvent) -> None:
        """What the model learns from an event (its first delivery), whatever the saga makes of it."""
        if event.event_id in self.run.observed:
            return
        self.run.observed.add(event.event_id)
        found = self.d.by_reply(event.type)
        if found is None or found[1] != "do_ok" or s.step is None:
            return
        step, names = found[0], [x.name for x in self.d.steps]
        if step.leaves_behind and getattr(event, "partner_id", None) == s.partner_id \
                and names.index(step.name) <= names.index(s.step) and step.name not in self.run.known_done:
            self.run.known_done.append(step.name)

    def record(self, before: SagaState | None, d: Decision) -> None:
        assert d.state is not None, d.reason
        after = d.state
        self.state = after
        old_done = () if before is None else before.done_steps
        self.run.do_order += [n for n in after.done_steps if n not in old_done]
        if after.deadline is not None and after.deadline not in self.run.deadlines:
            self.run.deadlines.append(after.deadline)
        for c in d.commands:
            first = self.sent.get(c.command_id)
            if first is None:  # sent for the first time
                self.sent[c.command_id] = c
                self.classify(after, c)
            elif first != c:
                self.conflicts.append((first, c))

    def classify(self, state: SagaState, c: Command) -> None:
        """An undo command is the compensation's (by round and attempt), a late success's undo,
        or an extra resource's: nothing else sends one."""
        for step in self.d.steps:
            if step.undo is None or step.undo.command != c.type:
                continue
            for rnd in range(state.undo_round + 1):
                kind = "undo" if rnd == 0 else f"undo-round{rnd}"
                for attempt in range(1, step.undo.policy.max_attempts + 1):
                    if c.command_id == ids.command_id(state.saga_id, step.name, kind, attempt):
                        self.run.undo_seq.append((step.name, rnd, attempt))
                        return
            others = {ids.command_id(state.saga_id, step.name, kind, 1)
                      for kind in ["undo-late", *(f"undo-extra-{r}" for r in
                                                  ("partner-1", "partner-2", "alliance-1", "alliance-2"))]}
            assert c.command_id in others, f"an undo command nothing explains: {c!r}"
            return

    def to_tombstone(self, event: SagaEvent) -> None:
        """A retained saga: only `on_tombstone` applies (the live rules never see it again)."""
        tomb = self.tomb
        assert tomb is not None
        v = on_tombstone(tomb, event, self.now, HORIZON)
        self.last = None
        if tomb.current is not None and opens_saga(event):
            assert (v.kind, v.saga_id) == ("pass_on", tomb.current), v
        elif not opens_saga(event) or self.now < tomb.ended_at + HORIZON:
            assert v.kind == "duplicate" and v.saga_id is None and v.tombstone is None, v
        else:
            assert v.kind == "open" and v.generation == tomb.generation + 1, v
            assert v.saga_id == ids.saga_id_generation(self.saga_ids[0], tomb.generation + 1), v
            assert v.saga_id not in self.saga_ids, "a saga id is never reused"
            assert v.tombstone is not None and v.tombstone.current == v.saga_id
            assert v.tombstone.version == tomb.version + 1 and v.tombstone.status == tomb.status

    def open(self, event: SagaEvent, generation: int) -> None:
        self.run = Run(saga_id=event.saga_id, generation=generation, history=[event])
        self.saga_ids.append(event.saga_id)
        label(f"generation {generation}")
        note(f"{self.now}: {event!r} (generation {generation})")
        d = decide(None, event, self.now, self.d, generation=generation)
        assert d.outcome == "applied" and d.state is not None, d.reason
        assert (d.state.saga_id, d.state.generation) == (event.saga_id, generation)
        self.record(None, d)
        twin = decide(None, event, self.now, self.d, generation=generation)
        assert twin.commands == d.commands and twin.state == d.state, "opening is deterministic"
        self.last = None
        again = decide(d.state, event, self.now, self.d)  # the opening event again: a duplicate too
        assert again.outcome == "duplicate" and again.state == d.state and again.commands == d.commands

    # --- rules ----------------------------------------------------------------------------
    @initialize(origin=st.sampled_from(["http", "partner_event"]), tight=st.booleans())
    def start(self, origin: Literal["http", "partner_event"], tight: bool) -> None:
        self.origin = origin
        self.d = type(self).defn if not tight else type(self).tight_defn()
        first = (ids.saga_id_for_correlation(CORRELATION_ID) if origin == "http"
                 else ids.saga_id_for_partner(PARTNER_ID))
        self.open(self.opener(first), 1)

    @classmethod
    def tight_defn(cls) -> SagaDefinition:
        raise NotImplementedError

    @rule(step=st.integers(0, 2), says=st.sampled_from(["do_ok", "do_failed", "undo_ok", "undo_failed"]),
          partner=st.sampled_from(PARTNERS), resource=st.sampled_from(RESOURCES))
    def participant_replies(self, step: int, says: Says, partner: str | None, resource: int | None) -> None:
        """Any reply of any step: the one awaited, a late one, a repeat with a new id, one
        naming another partner or a second resource."""
        event = self.reply(self.d.steps[step % len(self.d.steps)].name, says, partner, resource)
        if event is not None:
            self.deliver(event)

    @precondition(lambda self: self.tomb is None and self.state is not None and not self.state.terminal)
    @rule(success=st.sampled_from([True, True, True, False]))
    def participant_answers_what_the_saga_waits_for(self, success: bool) -> None:
        """The reply the saga waits for, for the saga's partner: mostly a success, so that
        sagas get somewhere (to the end of a flow, to the end of a compensation)."""
        s = self.live
        partner = s.partner_id or PARTNER_ID
        if s.status == SagaStatus.COMPENSATING and s.undoing is not None:
            event = self.reply(s.undoing, "undo_ok" if success else "undo_failed", partner, 1)
        elif s.step is not None:
            event = self.reply(s.step, "do_ok" if success else "do_failed", partner, 1)
        else:  # pragma: no cover - every live saga runs or undoes a step
            event = None
        if event is not None:
            self.deliver(event)

    @precondition(lambda self: self.run.history)
    @rule(back=st.integers(0, 30))
    def redelivered(self, back: int) -> None:
        """An event delivered before comes again (the same object: the same event id)."""
        self.deliver(self.run.history[-1 - back % len(self.run.history)])

    @precondition(lambda self: self.tomb is None and self.state is not None
                  and self.state.deadline is not None)
    @rule()
    def deadline_fires(self) -> None:
        """The saga's current deadline runs out: fired at (or after) its due time."""
        d = self.live.deadline
        assert d is not None
        self.now = max(self.now, d.due_at)
        self.deliver(_deadline(self.run.saga_id, d))

    @precondition(lambda self: self.run.deadlines)
    @rule(back=st.integers(0, 10))
    def old_deadline_fires_again(self, back: int) -> None:
        """A deadline the saga had fires (again: a rebalance, a redelivery), under the event id
        its firing always gets; unless it is the saga's current one, it is stale."""
        d = self.run.deadlines[-1 - back % len(self.run.deadlines)]
        self.now = max(self.now, d.due_at)
        current = None if self.tomb is not None else self.live.deadline
        self.deliver(_deadline(self.run.saga_id, d))
        if self.last is not None and d != current:
            assert self.last.decision.outcome in ("ignored", "duplicate"), \
                f"a deadline the saga no longer has fired it anyway: {d} (current {current})"

    @rule(step=st.integers(0, 2), phase=st.sampled_from(["forward", "compensation"]),
          kind=st.sampled_from(["reply", "retry"]), attempt=st.integers(1, 6))
    def stale_deadline_fires(self, step: int, phase: Literal["forward", "compensation"],
                             kind: Literal["reply", "retry"], attempt: int) -> None:
        """A deadline that is not the saga's (anymore): ignored."""
        current = None if self.tomb is not None or self.state is None else self.state.deadline
        name = self.d.steps[step % len(self.d.steps)].name
        if current is not None and (current.step, current.phase, current.kind, current.attempt) == \
                (name, phase, kind, attempt):
            attempt += 10  # not the current one
        event = DeadlineReached(event_id=self.fresh("stale-deadline"), saga_id=self.run.saga_id, step=name,
                                phase=phase, kind=kind, attempt=attempt)
        self.deliver(event)
        if self.last is not None:
            assert self.last.decision.outcome == "ignored", self.last.decision

    @rule(action=st.sampled_from(["retry", "cancel"]))
    def operator_acts(self, action: str) -> None:
        """An operator's RetryRequested (a failed compensation, again) or CancelRequested."""
        if action == "retry":
            self.deliver(RetryRequested(event_id=self.fresh("retry"), saga_id=self.run.saga_id))
        else:
            self.deliver(CancelRequested(event_id=self.fresh("cancel"), saga_id=self.run.saga_id))

    @rule(seconds=st.sampled_from(STEPS_OF_TIME))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @precondition(lambda self: self.tomb is None and self.state is not None and retainable(self.state))
    @rule()
    def retention_buries_the_saga(self) -> None:
        s = self.live
        tomb = bury(s, self.now)
        note(f"{self.now}: buried {s.saga_id} ({s.status})")
        assert (tomb.saga_id, tomb.status, tomb.generation) == (s.saga_id, s.status, s.generation)
        assert (tomb.version, tomb.ended_at, tomb.left_behind) == (s.version + 1, s.updated_at, s.left_behind)
        self.tomb, self.last = tomb, None
        label("buried")

    @precondition(lambda self: self.tomb is not None)
    @rule()
    def the_key_starts_again(self) -> None:
        """A new start for the business key of a retained saga: a duplicate within the horizon,
        the key's next generation after it (which the machine then drives)."""
        tomb = self.tomb
        assert tomb is not None
        event = self.opener(tomb.saga_id)
        self.deliver(event)
        v = on_tombstone(tomb, event, self.now, HORIZON)
        if v.kind == "open":
            assert v.saga_id is not None and v.generation is not None and v.tombstone is not None
            self.old_tombs.append(v.tombstone)
            self.tomb = None
            self.open(event.model_copy(update={"saga_id": v.saga_id}), v.generation)

    @precondition(lambda self: self.old_tombs)
    @rule(back=st.integers(0, 3))
    def event_reaches_an_older_generation(self, back: int) -> None:
        """A start that reaches an earlier generation's id goes on to the newer saga."""
        tomb = self.old_tombs[-1 - back % len(self.old_tombs)]
        v = on_tombstone(tomb, self.opener(tomb.saga_id), self.now, HORIZON)
        i = self.saga_ids.index(tomb.saga_id)
        assert (v.kind, v.saga_id) == ("pass_on", self.saga_ids[i + 1]), v

    # --- invariants -----------------------------------------------------------------------
    @property
    def status(self) -> str:
        if self.tomb is not None:
            return self.tomb.status
        assert self.state is not None
        return str(self.state.status)

    @invariant()
    def an_end_is_final_but_for_an_operator_retry(self) -> None:
        """Once terminal, the status stays; the one way out is compensation_failed ->
        compensating by an operator's RetryRequested (and that way out always works)."""
        if self.last is None:
            return
        step, d = self.last, self.last.decision
        assert d.state is not None
        way_out = (step.before.status == SagaStatus.COMPENSATION_FAILED
                   and isinstance(step.event, RetryRequested) and d.outcome == "applied")
        if step.before.status in TERMINAL:
            if way_out:
                assert d.state.status == SagaStatus.COMPENSATING
            else:
                assert d.state.status == step.before.status, (step.event, d.reason)
        for t in d.transitions:
            if t.from_status in TERMINAL:
                assert (t.from_status, t.to_status, t.event_type) == \
                    (SagaStatus.COMPENSATION_FAILED, SagaStatus.COMPENSATING, "RetryRequested")
        if d.transitions:
            assert d.transitions[0].from_status == step.before.status
            assert d.transitions[-1].to_status == d.state.status
        else:
            assert d.state.status == step.before.status
        if step.before.status == SagaStatus.COMPENSATION_FAILED and isinstance(step.event, RetryRequested):
            assert d.outcome in ("applied", "duplicate"), d.reason

    @invariant()
    def what_was_done_is_undone_in_reverse_order(self) -> None:
        """The compensation's undo commands name the steps that may have been done (done or
        maybe done) and have an undo, last done first; a retried undo stays on its step."""
        undoable = [n for n in reversed(self.run.do_order) if self.d.step(n).undo is not None]
        steps: list[str] = []
        for i, (name, rnd, attempt) in enumerate(self.run.undo_seq):
            if steps and steps[-1] == name:
                assert (rnd, attempt) > self.run.undo_seq[i - 1][1:], self.run.undo_seq
            else:
                steps.append(name)
        assert steps == undoable[:len(steps)], (steps, undoable)
        if self.status == SagaStatus.COMPENSATED:
            assert steps == undoable, (steps, undoable)
            if self.tomb is None:
                assert self.state is not None
                assert not [n for n in self.state.done_steps if self.d.step(n).undo is not None]
                assert set(self.state.undone_steps) == set(undoable)
        if self.status in (SagaStatus.FAILED, SagaStatus.COMPLETED):
            assert steps == [], (self.status, steps)
        if self.status == SagaStatus.FAILED:
            assert undoable == [], "a saga fails outright only when it did nothing it can undo"

    @invariant()
    def an_ignored_event_changes_only_the_bookkeeping(self) -> None:
        if self.last is None:
            return
        before, d = self.last.before, self.last.decision
        assert d.state is not None
        if d.outcome == "duplicate":
            assert d.state is before and d.transitions == ()
            return
        assert (d.state.version, d.state.updated_at) == (before.version + 1, self.last.now)
        assert d.state.applied[-1].event_id == self.last.event.event_id
        if d.outcome == "ignored":
            assert d.reason and d.transitions == () and d.commands == ()
            assert d.state.ignored == before.ignored + 1
            assert d.state.model_dump(exclude=BOOKKEEPING) == before.model_dump(exclude=BOOKKEEPING)

    @invariant()
    def applying_an_event_twice_changes_nothing(self) -> None:
        if self.last is None:
            return
        d = self.last.decision
        again = decide(d.state, self.last.event, self.now, self.d)
        assert again.outcome == "duplicate", again
        assert again.state == d.state
        assert [c.command_id for c in again.commands] == [c.command_id for c in d.commands]
        assert again.commands == d.commands

    @invariant()
    def command_ids_are_deterministic(self) -> None:
        if self.last is not None:
            d, twin = self.last.decision, self.last.twin
            assert (twin.outcome, twin.state, twin.transitions) == (d.outcome, d.state, d.transitions)
            assert twin.commands == d.commands
        assert not self.conflicts, f"one command id, two contents: {self.conflicts[0]}"

    @invariant()
    def nothing_that_needs_a_person_is_retained(self) -> None:
        if self.tomb is not None or self.state is None:
            return
        s = self.state
        if s.status == SagaStatus.COMPENSATION_FAILED or s.status not in TERMINAL:
            assert not retainable(s)

    @invariant()
    def what_cannot_be_undone_is_listed_at_the_end(self) -> None:
        left = self.tomb.left_behind if self.tomb is not None else self.live.left_behind
        if self.status not in (SagaStatus.COMPENSATED, SagaStatus.FAILED, SagaStatus.COMPENSATION_FAILED):
            assert left == () or self.status == SagaStatus.COMPENSATING
            return
        known = self.run.do_order + self.run.known_done
        stays = [x.name for x in self.d.steps if x.name in known and x.undo is None and x.leaves_behind]
        for name in stays:
            assert any(line.startswith(f"{name}: {self.d.step(name).leaves_behind}") for line in left), \
                (name, left)
        assert len(left) == len(stays), (left, stays)


class PartnerCreationMachine(SagaMachine):
    defn = partner_creation()

    @classmethod
    def tight_defn(cls) -> SagaDefinition:
        return partner_creation(TIGHT)


class AlpesPartnerMachine(SagaMachine):
    defn = alpes_partner()

    @classmethod
    def tight_defn(cls) -> SagaDefinition:
        return alpes_partner(TIGHT)


TestPartnerCreation = PartnerCreationMachine.TestCase
TestPartnerCreation.settings = SETTINGS
TestAlpesPartner = AlpesPartnerMachine.TestCase
TestAlpesPartner.settings = SETTINGS


# --- the defects the machine found, at their smallest ------------------------------------------
def _fold(defn: SagaDefinition, *timed: tuple[float, SagaEvent]) -> list[Decision]:
    """Decide each (now, event) in turn from no saga; every decision, in order."""
    state: SagaState | None = None
    out: list[Decision] = []
    for now, ev in timed:
        d = decide(state, ev, now, defn)
        state = d.state if d.state is not None else state
        out.append(d)
    return out


def test_a_contract_made_after_the_saga_gave_up_on_it_is_listed_as_left_behind() -> None:
    """Alpes: the wait for the contract runs out, the saga compensates (DeletePartner); then
    alianzas' ContractCreated arrives after all. The contract stays (alianzas offers no
    cancel), so the compensated saga must list it (it was ignored as "already undone")."""
    defn, sid = alpes_partner(), "saga-1"
    [*_, waiting] = _fold(defn, (T0, StartSaga(event_id="start", saga_id=sid, correlation_id=CORRELATION_ID,
                                               partner=PARTNER)),
                          (T0 + 1, PartnerCreated(event_id="created", saga_id=sid, partner_id=PARTNER_ID)))
    assert waiting.state is not None and waiting.state.deadline is not None
    late_contract = ContractCreated(event_id="contract", saga_id=sid, partner_id=PARTNER_ID,
                                    contrato_id="c-1")
    deleted = PartnerDeleted(event_id="deleted", saga_id=sid, partner_id=PARTNER_ID)
    timed_out = decide(waiting.state, _deadline(sid, waiting.state.deadline), T0 + 61, defn)
    assert timed_out.state is not None and timed_out.state.status == SagaStatus.COMPENSATING
    late = decide(timed_out.state, late_contract, T0 + 62, defn)
    assert late.state is not None
    end = decide(late.state, deleted, T0 + 63, defn)
    assert end.state is not None and end.state.status == SagaStatus.COMPENSATED
    assert [line for line in end.state.left_behind if line.startswith("await_contract: ")], \
        (late.outcome, late.reason, end.state.left_behind)


def test_a_deadline_of_an_earlier_compensation_round_is_stale() -> None:
    """Partner creation: the alliance fails, RevertPartner's first reply deadline fires
    (applied: retry after a backoff), every attempt times out (compensation_failed), more
    than APPLIED_MEMORY events pass, an operator retries. That first firing, redelivered now,
    is not the saga's deadline (round 1's is due 30 s later): ignored (it was applied)."""
    defn, sid = partner_creation(), "saga-1"
    [*_, d] = _fold(defn, (T0, StartSaga(event_id="start", saga_id=sid, correlation_id=CORRELATION_ID,
                                         partner=PARTNER)),
                    (T0 + 1, PartnerCreated(event_id="created", saga_id=sid, partner_id=PARTNER_ID)),
                    (T0 + 2, AllianceCreationFailed(event_id="alliance-failed", saga_id=sid,
                                                    partner_id=PARTNER_ID)))
    assert d.state is not None and d.state.deadline is not None
    first_firing = _deadline(sid, d.state.deadline)  # (create_partner, compensation, reply, 1)
    state, now = d.state, T0 + 2
    while state.status != SagaStatus.COMPENSATION_FAILED:  # every attempt times out
        assert state.deadline is not None
        now = state.deadline.due_at
        d = decide(state, _deadline(sid, state.deadline), now, defn)
        assert d.state is not None and d.outcome == "applied"
        state = d.state
    for i in range(APPLIED_MEMORY):  # the first firing leaves the saga's memory
        d = decide(state, CancelRequested(event_id=f"cancel-{i}", saga_id=sid), now, defn)
        assert d.state is not None and d.outcome == "ignored"
        state = d.state
    d = decide(state, RetryRequested(event_id="retry", saga_id=sid), now, defn)
    assert d.state is not None and d.state.deadline is not None and d.state.undo_round == 1
    assert _key(d.state.deadline) == (first_firing.step, first_firing.phase, first_firing.kind,
                                      first_firing.attempt)
    again = decide(d.state, first_firing, now + 1, defn)  # round 1's deadline is due at now + 30
    assert again.outcome in ("ignored", "duplicate"), (again.outcome, again.state and again.state.deadline)
