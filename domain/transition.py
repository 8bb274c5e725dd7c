"""The saga's transition function: (state, event, now) -> Decision(state, commands).

Pure: no clock, no I/O. The caller passes `now` and carries out the commands. Applying the
same event twice changes nothing: the second time the decision is a `duplicate` that
re-sends the very commands (same ids) the first time produced, in case they were lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from domain import ids
from domain.definition import PARTNER_CREATION, Action, SagaDefinition, Step
from domain.lifecycle import erasure_refusal
from domain.messages import (
    AllianceCreated,
    CancelRequested,
    Command,
    DeadlineReached,
    Destination,
    ErasureRequested,
    PartnerCreated,
    RetryRequested,
    SagaEvent,
    StartSaga,
)
from domain.privacy import without_emails
from domain.state import Applied, Deadline, ErasedPartner, SagaState, SagaStatus, Transition

__all__ = ["APPLIED_MEMORY", "LATE_UNDONE_MEMORY", "Decision", "decide"]

# How many applied events (ids and the commands they produced) a saga remembers for
# deduplication. A replay after a crash re-delivers events since the partition's last commit,
# which for one saga is a few events at most; a redelivered event older than this is judged
# on the current state like any other (a stale reply is ignored). A normal saga has 2-4
# events, one whose every retry and timeout ran out 13.
APPLIED_MEMORY = 16
# Late or extra resources undone, remembered so each is undone once.
LATE_UNDONE_MEMORY = 16

Outcome = Literal["applied", "duplicate", "ignored", "rejected"]


@dataclass(frozen=True)
class Decision:
    state: SagaState | None
    commands: tuple[Command, ...] = ()
    transitions: tuple[Transition, ...] = ()
    outcome: Outcome = "applied"
    reason: str | None = None
    # An ignored event that was expected (a participant's echo of a success the saga has,
    # Action.echoes): recorded and counted, nothing for a person to look at.
    expected: bool = False

    @property
    def changed(self) -> bool:
        return self.outcome in ("applied", "ignored")


class _Expected(str):
    """Why an event was ignored, when that was expected (see Decision.expected)."""


class _Change:
    """Accumulates one event's effect on a saga: new field values, transitions, commands."""

    def __init__(self, state: SagaState, event: SagaEvent, now: float, defn: SagaDefinition):
        self._s = state
        # Changes not yet applied to `_s`: `s` applies them with one model_copy when read, so
        # consecutive `set`s cost one copy (a copy per changed field was 40% of `decide`).
        self._pending: dict[str, Any] = {}
        self.event = event
        self.now = now
        self.defn = defn
        self.version = state.version
        self.commands: list[Command] = []
        self.transitions: list[Transition] = []

    @property
    def s(self) -> SagaState:
        """The saga with every change so far."""
        if self._pending:
            self._s = self._s.model_copy(update=self._pending)
            self._pending = {}
        return self._s

    def set(self, **fields: Any) -> None:
        self._pending.update(fields)

    def move(self, to: str) -> None:
        self.transitions.append(
            Transition(version=self.version, from_status=self.s.status, to_status=to,
                       event_type=self.event.type, event_id=self.event.event_id, at=self.now)
        )
        self.set(status=to)

    def send(self, step: Step, action: Action, kind: str, attempt: int,
             data: dict[str, Any] | None = None) -> None:
        if action.command is None:  # a step that only waits: nothing to send
            return
        self.commands.append(
            Command(command_id=ids.command_id(self.s.saga_id, step.name, kind, attempt),
                    saga_id=self.s.saga_id, correlation_id=self.s.correlation_id,
                    destination=action.destination, type=action.command,
                    data=action.data(self.s) if data is None else data, attempt=attempt)
        )

    def attempt_ids(self, step: Step) -> list[str]:
        """The command ids of every attempt the saga sent of `step` (the last step it ran)."""
        attempts = self.s.attempt if self.s.step == step.name else 1
        return [ids.command_id(self.s.saga_id, step.name, "do", a) for a in range(1, attempts + 1)]

    def notify(self, kind: str) -> None:
        self.commands.append(
            Command(command_id=ids.lifecycle_id(self.s.saga_id, f"{kind}:{self.version}"),
                    saga_id=self.s.saga_id, correlation_id=self.s.correlation_id,
                    destination=Destination.LIFECYCLE, type=kind,
                    data={"status": str(self.s.status), "partner_id": self.s.partner_id,
                          "alliance_id": self.s.alliance_id, "reason": self.s.reason,
                          "flow": self.s.flow, **({"captures": self.s.captures} if self.s.captures else {}),
                          **({"left_behind": list(self.s.left_behind)} if self.s.left_behind else {}),
                          "needs_attention": self.s.status == SagaStatus.COMPENSATION_FAILED})
        )

    def left_behind(self) -> tuple[str, ...]:
        """One line per done step whose participant offers no undo (Step.leaves_behind)."""
        captured = ", ".join(f"{k} {v}" for k, v in sorted(self.s.captures.items()))
        ids_ = f" ({captured})" if captured else ""
        return tuple(f"{name}: {step.leaves_behind}{ids_}" for name in self.s.done_steps
                     if (step := self.defn.step(name)).undo is None and step.leaves_behind)

    def end_after_failure(self, status: str) -> None:
        """Move to a terminal status after giving up: what the saga leaves behind (done steps
        whose participant offers no undo) is listed before the notice goes out."""
        self.set(left_behind=self.left_behind())
        self.move(status)
        self.notify("SagaCompensated" if status == SagaStatus.COMPENSATED else "SagaFailed")

    def wait(self, step: Step, phase: Literal["forward", "compensation"],
             kind: Literal["reply", "retry"], attempt: int, seconds: float) -> None:
        self.set(deadline=Deadline(due_at=self.now + seconds, step=step.name, phase=phase,
                                   kind=kind, attempt=attempt))

    # --- forward
    def start_step(self, step: Step, attempt: int = 1) -> None:
        if self.s.status != step.in_progress:
            self.move(step.in_progress)
        self.set(step=step.name, attempt=attempt)
        self.send(step, step.do, "do", attempt)
        self.wait(step, "forward", "reply", attempt, step.do.policy.reply_timeout_s)

    def step_done(self, step: Step) -> None:
        self.set(done_steps=(*self.s.done_steps, step.name), deadline=None)
        self.move(step.done)
        nxt = self.defn.after(step.name)
        if nxt is not None:
            self.start_step(nxt)
        else:
            self.move(SagaStatus.COMPLETED)
            self.notify("SagaCompleted")

    def fail_step(self, reason: str, maybe_done: Step | None = None) -> None:
        """The saga gives up going forward and undoes what it did. `maybe_done` is a step it
        gave up on without an answer (its every attempt timed out, or an operator cancelled
        it while it ran): it may have happened, so it is undone first, like a done step
        (Temporal's saga sample registers a step's undo before running it)."""
        self.set(deadline=None, reason=reason)
        if maybe_done is not None and maybe_done.undo is not None \
                and maybe_done.name not in self.s.done_steps:
            self.set(done_steps=(*self.s.done_steps, maybe_done.name),
                     maybe_done=(*self.s.maybe_done, maybe_done.name))
        if self._last_undoable() is None:
            self.end_after_failure(SagaStatus.FAILED)
        else:
            self.move(SagaStatus.COMPENSATING)
            self.next_undo()

    # --- compensation
    def _last_undoable(self) -> Step | None:
        for name in reversed(self.s.done_steps):
            step = self.defn.step(name)
            if step.undo is not None:
                return step
        return None

    def next_undo(self) -> None:
        step = self._last_undoable()
        if step is None:
            self.set(undoing=None, undo_attempt=0, deadline=None)
            self.end_after_failure(SagaStatus.COMPENSATED)
            return
        self.undo(step, 1)

    def undo(self, step: Step, attempt: int) -> None:
        assert step.undo is not None
        self.set(undoing=step.name, undo_attempt=attempt)
        kind = "undo" if self.s.undo_round == 0 else f"undo-round{self.s.undo_round}"
        data = None
        if step.name in self.s.maybe_done:
            # Whatever any attempt may have made: the participant finds it by command id
            # (and answers an undo of nothing with success).
            data = {**step.undo.data(self.s), "command_ids": self.attempt_ids(step)}
        self.send(step, step.undo, kind, attempt, data=data)
        self.wait(step, "compensation", "reply", attempt, step.undo.policy.reply_timeout_s)

    def undo_failed(self, step: Step, reason: str) -> None:
        assert step.undo is not None
        attempt = self.s.undo_attempt
        if attempt < step.undo.policy.max_attempts:
            self.set(reason=reason)
            self.wait(step, "compensation", "retry", attempt, step.undo.policy.backoff(attempt))
        else:
            self.set(deadline=None, reason=f"{reason} (gave up after {attempt} attempts)")
            self.end_after_failure(SagaStatus.COMPENSATION_FAILED)

    def decision(self, outcome: Outcome = "applied", reason: str | None = None) -> Decision:
        applied = (*self.s.applied, Applied(event_id=self.event.event_id, commands=tuple(self.commands)))
        ignored = self.s.ignored + (1 if outcome == "ignored" else 0)
        self.set(applied=applied[-APPLIED_MEMORY:], version=self.version, updated_at=self.now,
                 ignored=ignored, transitions=tuple(self.transitions),
                 late_undone=self.s.late_undone[-LATE_UNDONE_MEMORY:])
        return Decision(self.s, tuple(self.commands), tuple(self.transitions), outcome, reason)


def decide(state: SagaState | None, event: SagaEvent, now: float,
           defn: SagaDefinition = PARTNER_CREATION, *, generation: int = 1) -> Decision:
    """`generation`: which saga of its business key an opening event starts (domain.lifecycle)."""
    if state is None:
        return _open(event, now, defn, generation)
    for seen in state.applied:
        if seen.event_id == event.event_id:
            return Decision(state, seen.commands, (), "duplicate", "event already applied")
    change = _Change(state, event, now, defn)
    change.version = state.version + 1
    reason = _apply(change, event)
    if reason is not None:
        change = _Change(state, event, now, defn)
        change.version = state.version + 1
        ignored = change.decision("ignored", str(reason))
        if isinstance(reason, _Expected):
            return Decision(ignored.state, ignored.commands, ignored.transitions, "ignored", str(reason),
                            expected=True)
        return ignored
    return change.decision()


def _open(event: SagaEvent, now: float, defn: SagaDefinition, generation: int = 1) -> Decision:
    """A saga's first event: an HTTP start, or a PartnerCreated that no saga asked for."""
    if isinstance(event, StartSaga):
        origin: Literal["http", "partner_event"] = "http"
        partner_id = None
    elif isinstance(event, PartnerCreated):
        origin, partner_id = "partner_event", event.partner_id
    else:
        return Decision(None, outcome="rejected", reason=f"no saga {event.saga_id} for {event.type}")
    if event.partner is None:
        return Decision(None, outcome="rejected",
                        reason=f"{event.type} without the partner's data cannot open saga {event.saga_id}")
    state = SagaState(saga_id=event.saga_id, correlation_id=event.correlation_id or event.saga_id,
                      origin=origin, status=SagaStatus.STARTED, flow=defn.name, flow_version=defn.version,
                      partner=event.partner,
                      partner_id=partner_id, created_at=now, updated_at=now, version=0,
                      generation=generation)
    change = _Change(state, event, now, defn)
    change.version = 1
    change.transitions.append(Transition(version=1, from_status=None, to_status=SagaStatus.STARTED,
                                         event_type=event.type, event_id=event.event_id, at=now))
    change.notify("SagaStarted")
    first = defn.steps[0]
    if origin == "http":
        change.start_step(first)
    else:
        change.set(step=first.name, attempt=1)
        change.move(first.in_progress)
        change.step_done(first)
    return change.decision()


def _apply(c: _Change, event: SagaEvent) -> str | None:
    """Apply `event` with its type's handler; return None when applied, or why it was ignored."""
    return _HANDLERS.get(type(event), _on_reply)(c, event)


def _on_start(c: _Change, event: StartSaga) -> str | None:
    return "saga already started"


def _on_retry(c: _Change, event: RetryRequested) -> str | None:
    """An operator's retry of a failed compensation: its undo again, with new command ids."""
    s = c.s
    if s.status != SagaStatus.COMPENSATION_FAILED or s.undoing is None:
        return f"retry only applies to a saga in {SagaStatus.COMPENSATION_FAILED}"
    c.set(reason=None, undo_round=s.undo_round + 1)
    c.move(SagaStatus.COMPENSATING)
    c.undo(c.defn.step(s.undoing), 1)
    return None


def _on_cancel(c: _Change, event: CancelRequested) -> str | None:
    """An operator's cancel: a live saga gives up going forward, as after a failed step."""
    s = c.s
    if s.terminal or s.status == SagaStatus.COMPENSATING:
        return f"cannot cancel a saga in {s.status}"
    running = c.defn.step(s.step) if s.step is not None else None
    c.fail_step(event.reason, maybe_done=running if running and s.status == running.in_progress else None)
    return None


def _on_reply(c: _Change, event: SagaEvent) -> str | None:
    """A participant's answer to one of the definition's steps (Action.succeeded/failed):
    done, failed, undone, or late, duplicate or extra."""
    s = c.s
    found = c.defn.by_reply(event.type)
    if found is None:  # pragma: no cover - a type without a handler answers a step
        return f"{event.type} answers no step"
    step, says = found
    extra = _extra_resource(s, event)
    if says == "do_ok" and extra is not None:
        # A retried command made a second partner/alliance: undo that one, once.
        tag = f"{step.name}:{extra[1]}"
        if step.undo is None or tag in s.late_undone:
            return f"{event.type} for {extra[1]}: already undone"
        c.set(late_undone=(*s.late_undone, tag))
        c.send(step, step.undo, f"undo-extra-{extra[1]}", 1, data=extra[0])
        return None
    event_partner = getattr(event, "partner_id", None)
    if s.partner_id is not None and event_partner is not None and event_partner != s.partner_id:
        return f"{event.type} names partner {event_partner}, saga has {s.partner_id}"
    current = s.step == step.name and s.status == step.in_progress
    if not current and says in ("do_ok", "do_failed") and _catch_up(c, step):
        current = True  # the steps before it only waited, and this answer says they happened

    if says == "do_ok":
        if current:
            if isinstance(event, PartnerCreated):
                c.set(partner_id=event.partner_id)
            if isinstance(event, AllianceCreated):
                c.set(alliance_id=event.alliance_id)
            _capture(c, step, event)
            c.step_done(step)
            return None
        if step.name in s.maybe_done:
            # The saga gave up on this step and sent an undo naming every attempt's command
            # id: it covers whatever this success made, so it gets no second undo.
            return f"late {event.type}: covered by the undo of {step.name} sent when the saga gave up on it"
        echo = step.do.echoes and event_partner is not None and event_partner == s.partner_id
        if step.name in s.done_steps:
            if echo:
                return _Expected(f"{event.type} for partner {event_partner}: the participant's own "
                                 f"announcement of step {step.name}, already done")
            return f"duplicate {event.type}: step {step.name} already done"
        if step.name in s.undone_steps:
            if echo:
                return _Expected(f"{event.type} for partner {event_partner}: the participant's own "
                                 f"announcement of step {step.name}, since undone")
            return f"{event.type}: step {step.name} was already undone by the compensation"
        if not _started(c.defn, s, step):
            return f"{event.type} for step {step.name}, which this saga has not started"
        if step.undo is None:
            if not step.leaves_behind or step.name in s.done_steps:
                return f"late {event.type}: nothing to undo"
            # It happened after the saga gave up on it, and nothing can undo it: it is left
            # behind, listed when the saga ends (or now, if it has).
            c.set(done_steps=(*s.done_steps, step.name))
            _capture(c, step, event)
            if s.terminal:
                c.set(left_behind=c.left_behind())
            return None
        # The saga gave up on this step, yet it happened: undo it, once.
        if step.name in s.late_undone:
            return f"late {event.type}: already undone"
        if isinstance(event, AllianceCreated):
            c.set(alliance_id=event.alliance_id)
        if isinstance(event, PartnerCreated):
            c.set(partner_id=event.partner_id)
        c.set(late_undone=(*s.late_undone, step.name))
        c.send(step, step.undo, "undo-late", 1)
        return None
    if says == "do_failed":
        if current:
            c.fail_step(f"{event.type}: {getattr(event, 'reason', '') or 'no reason given'}")
            return None
        return f"late {event.type} for step {step.name}, which the saga has left"
    undoing = s.status == SagaStatus.COMPENSATING and s.undoing == step.name
    waiting_undo = undoing and s.deadline is not None and s.deadline.kind == "reply"
    if says == "undo_ok":
        # Also during the backoff before a retry: an earlier attempt did succeed after all.
        if undoing:
            c.set(done_steps=tuple(n for n in s.done_steps if n != step.name), undoing=None,
                  undone_steps=(*s.undone_steps, step.name))
            c.next_undo()
            return None
        return f"{event.type} while not waiting for it (status {s.status})"
    # undo_failed
    if waiting_undo:
        c.undo_failed(step, f"{event.type}: {getattr(event, 'reason', '') or 'no reason given'}")
        return None
    return f"{event.type} while not waiting for it (status {s.status})"


def _erase(c: _Change, event: ErasureRequested) -> str | None:
    """The right to erasure: a finished saga forgets the partner's personal data (its
    `partner`, the data of the commands it remembers, email addresses quoted in its reasons)
    and keeps its ids, statuses and history; the erasure is a history entry of its own, and a
    lifecycle notice (PersonalDataErased) tells whoever listens. Only an end nobody must act
    on: a live saga, or one whose undo waits for a person (its undo may need the data), is
    refused."""
    s = c.s
    if s.erased_at is not None:
        return _Expected("the partner's personal data is already erased")
    refused = erasure_refusal(s.status)
    if refused is not None:
        return f"{refused} ({s.status})"
    c.set(partner=ErasedPartner(), erased_at=c.now,
          # Remembered to recognise a redelivered event, which then re-sends nothing.
          applied=tuple(a.model_copy(update={"commands": ()}) for a in s.applied),
          reason=without_emails(s.reason) if s.reason else s.reason,
          left_behind=tuple(without_emails(line) for line in s.left_behind))
    c.transitions.append(Transition(version=c.version, from_status=s.status, to_status=s.status,
                                    event_type=c.event.type, event_id=c.event.event_id, at=c.now))
    c.notify("PersonalDataErased")
    return None


def _extra_resource(s: SagaState, event: SagaEvent) -> tuple[dict[str, Any], str] | None:
    """For a success naming another partner/alliance than the saga's: the undo's data and id."""
    if isinstance(event, PartnerCreated) and s.partner_id and event.partner_id != s.partner_id:
        return {"partner_id": event.partner_id}, event.partner_id
    if isinstance(event, AllianceCreated) and s.alliance_id and event.alliance_id != s.alliance_id \
            and event.partner_id == s.partner_id:
        return {"partner_id": event.partner_id, "alliance_id": event.alliance_id}, event.alliance_id
    return None


def _capture(c: _Change, step: Step, event: SagaEvent) -> None:
    got = {name: str(v) for name in step.do.captures if (v := getattr(event, name, None)) is not None}
    if got:
        c.set(captures={**c.s.captures, **got})


def _catch_up(c: _Change, step: Step) -> bool:
    """An answer to a later step while the saga waits on an earlier one: when the steps from
    the current one to that later one all only wait (send nothing), the answer says the
    earlier ones happened (compliance decided on a contract, so alianzas made it; the two
    arrive on different topics, in either order). Mark them done and start `step`; True
    when done, False when the answer does not say that."""
    s, names = c.s, [x.name for x in c.defn.steps]
    if s.step is None or s.status != c.defn.step(s.step).in_progress or step.name not in names:
        return False
    i, j = names.index(s.step), names.index(step.name)
    if j <= i or not all(c.defn.steps[k].do.waits for k in range(i, j + 1)):
        return False
    for k in range(i, j):
        c.step_done(c.defn.steps[k])  # each starts the next one
    return True


def _started(defn: SagaDefinition, s: SagaState, step: Step) -> bool:
    if s.step is None:
        return False
    names = [x.name for x in defn.steps]
    return names.index(step.name) <= names.index(s.step)


def _on_deadline(c: _Change, ev: DeadlineReached) -> str | None:
    d = c.s.deadline
    if d is None or (d.step, d.phase, d.kind, d.attempt) != (ev.step, ev.phase, ev.kind, ev.attempt) \
            or (ev.due_at is not None and ev.due_at != d.due_at):
        return "stale deadline: the saga has moved on"
    step = c.defn.step(ev.step)
    if ev.phase == "forward":
        if ev.kind == "retry":
            c.start_step(step, ev.attempt + 1)
        elif ev.attempt < step.do.policy.max_attempts:
            # No reply yet: wait out the backoff, then send the next attempt (a reply to
            # this one that comes meanwhile still counts).
            c.wait(step, "forward", "retry", ev.attempt, step.do.policy.backoff(ev.attempt))
        else:
            why = (f"no {step.do.succeeded} within {step.do.policy.reply_timeout_s:g}s" if step.do.waits
                   else f"no reply to {step.do.command} after {ev.attempt} attempts")
            c.fail_step(why, maybe_done=step)
        return None
    if ev.kind == "retry":
        c.undo(step, ev.attempt + 1)
        return None
    assert step.undo is not None
    c.undo_failed(step, f"no reply to {step.undo.command} within {step.undo.policy.reply_timeout_s}s")
    return None


#: Each event type's handler; a participant's answer (any other type) goes to `_on_reply`.
_HANDLERS: dict[type, Callable[[_Change, Any], str | None]] = {
    StartSaga: _on_start,
    DeadlineReached: _on_deadline,
    RetryRequested: _on_retry,
    CancelRequested: _on_cancel,
    ErasureRequested: _erase,
}
