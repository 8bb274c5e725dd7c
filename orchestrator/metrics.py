"""In-process counters and a step-latency histogram, rendered as Prometheus text.

Plain dicts on the event loop: no locks needed, no per-event allocation beyond a tuple key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

__all__ = ["METRICS", "Metrics"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self.gauges: dict[str, float] = {}
        self._hist = [0] * (len(_BUCKETS) + 1)
        self._hist_sum = 0.0
        self._hist_count = 0

    def inc(self, name: str, n: int = 1, **labels: str) -> None:
        self.counters[(name, tuple(sorted(labels.items())))] += n

    def set(self, name: str, value: float) -> None:
        self.gauges[name] = value

    def observe_step(self, seconds: float) -> None:
        i = 0
        while i < len(_BUCKETS) and seconds > _BUCKETS[i]:
            i += 1
        self._hist[i] += 1
        self._hist_sum += seconds
        self._hist_count += 1

    def render(self) -> str:
        lines: list[str] = []
        seen: set[str] = set()
        for (name, labels), value in sorted(self.counters.items()):
            if name not in seen:
                lines.append(f"# TYPE saga_{name} counter")
                seen.add(name)
            lines.append(f"saga_{name}{_labels(labels)} {value}")
        for name, gauge in sorted(self.gauges.items()):
            lines += [f"# TYPE saga_{name} gauge", f"saga_{name} {gauge}"]
        lines.append("# TYPE saga_step_latency_seconds histogram")
        acc = 0
        for le, n in zip((*map(str, _BUCKETS), "+Inf"), self._hist, strict=True):
            acc += n
            lines.append(f'saga_step_latency_seconds_bucket{{le="{le}"}} {acc}')
        lines.append(f"saga_step_latency_seconds_sum {self._hist_sum}")
        lines.append(f"saga_step_latency_seconds_count {self._hist_count}")
        return "\n".join(lines) + "\n"


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return "{" + inner + "}" if inner else ""


METRICS = Metrics()
