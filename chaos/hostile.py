"""Hostile inbound messages, generated with Hypothesis: what a broken or malicious
participant could put on the orchestrator's inbound topics.

Kinds: random bytes; JSON that is not a CloudEvent; CloudEvents with missing attributes,
wrong types or unknown event types; huge documents (over the 64 KiB limit) and deeply nested
ones; unicode edge cases (lone surrogates, control characters, NUL); well-formed replies for
sagas that do not exist; and, when live saga ids are given, replies those sagas cannot use
(a partner that is not theirs). None of them may change a saga; each must reach the
dead-letter topic with a reason.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

__all__ = ["hostile_messages"]

_TYPES = ["PartnerCreated", "PartnerCreationFailed", "PartnerReverted", "PartnerRevertFailed",
          "AllianceCreated", "AllianceCreationFailed", "AllianceCancelled"]
_REPLIES = [t for t in _TYPES if t != "PartnerCreated"]
_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                          st.text(max_size=20))
_json = st.recursive(_json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
_weird_text = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30),
    st.sampled_from(["\x00", "a\x00b", "\x07bell", "\u202eevil", "\ufeff", "\U0001f4a9" * 3, "\x1f"]),
)


def _ce(etype: Any, data: Any, **extra: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/hostile", "type": etype,
            "datacontenttype": "application/json", "data": data, **extra}


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", errors="surrogatepass")


@st.composite
def _message(draw: st.DrawFn, live_sagas: list[str]) -> bytes:
    kinds = ["bytes", "not_ce", "missing", "wrong_types", "unknown_type", "huge", "nested", "unicode",
             "no_saga"] + (["not_theirs"] if live_sagas else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "bytes":
        return draw(st.binary(min_size=0, max_size=300))
    if kind == "not_ce":
        return _dumps(draw(_json))
    if kind == "missing":
        doc = _ce(draw(st.sampled_from(_TYPES)), {"partner_id": str(uuid.uuid4())})
        for key in draw(st.lists(st.sampled_from(["id", "type", "specversion", "data", "source"]),
                                 min_size=1, unique=True)):
            doc.pop(key, None)
        return _dumps(doc)
    if kind == "wrong_types":
        wrong = st.one_of(st.integers(), st.lists(st.integers(), max_size=3), st.just(None),
                          st.dictionaries(st.text(max_size=3), st.integers()))
        data = {"partner_id": draw(wrong),
                "alliance_id": draw(_json), "nombre": draw(_json)}
        return _dumps(_ce(draw(st.sampled_from(_TYPES)), data, id=draw(_json_scalars)))
    if kind == "unknown_type":
        etype = draw(st.text(min_size=1, max_size=40).filter(lambda t: t not in _TYPES))
        return _dumps(_ce(etype, {"partner_id": str(uuid.uuid4())}))
    if kind == "huge":
        return _dumps(_ce("AllianceCreated", {"partner_id": "p", "alliance_id": "x" * 70_000}))
    if kind == "nested":
        depth = draw(st.integers(min_value=200, max_value=20_000))
        head = b'{"specversion":"1.0","id":"n","type":"AllianceCreated","data":'
        return head + b"[" * depth + b"]" * depth + b"}"
    if kind == "unicode":
        text = draw(_weird_text)
        if draw(st.booleans()):  # a lone surrogate, as some JSON encoders write it
            text += "\ud800"
        return _dumps(_ce(draw(st.sampled_from(_REPLIES)), {"partner_id": text, "alliance_id": text,
                                                            "reason": text}))
    if kind == "no_saga":
        etype = draw(st.sampled_from(_REPLIES))
        data = {"partner_id": f"nobody-{uuid.uuid4()}", "alliance_id": "a-1", "reason": "x"}
        extra = {"sagaid": f"no-saga-{uuid.uuid4()}"} if draw(st.booleans()) else {}
        return _dumps(_ce(etype, data, **extra))
    # not_theirs: a live saga's id, someone else's partner
    saga_id = draw(st.sampled_from(live_sagas))
    etype = draw(st.sampled_from(["AllianceCreated", "AllianceCreationFailed", "PartnerReverted"]))
    return _dumps(_ce(etype, {"partner_id": f"intruder-{uuid.uuid4()}", "alliance_id": "a-x",
                              "reason": "x"}, sagaid=saga_id))


def hostile_messages(count: int, live_sagas: list[str] | None = None) -> list[bytes]:
    """`count` distinct hostile messages (fewer only if Hypothesis runs out of new ones).
    Hypothesis draws derandomized (the same kinds and shapes each run); ids are fresh."""
    out: dict[bytes, None] = {}  # distinct, in the order drawn

    @settings(max_examples=count * 2, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_message(live_sagas or []))
    def collect(msg: bytes) -> None:
        if len(out) < count:
            out[msg] = None

    collect()
    return list(out)
