"""The worker's step histograms as /metrics renders them (runtime/metrics.py)."""

from __future__ import annotations

from benchmarks.report import bucket_quantile, step_buckets
from runtime.metrics import Metrics


def test_a_step_and_its_kafka_part_land_in_their_own_histograms() -> None:
    m = Metrics()
    m.observe_step(0.2, kafka_wait=0.03)
    m.observe_step(0.04, kafka_wait=0.004)
    m.observe_step(0.07)  # an HTTP start: no Kafka part
    text = m.render()
    steps = step_buckets(text)
    waits = step_buckets(text, "saga_step_kafka_wait_seconds")
    assert dict(steps)[0.05] == 1 and dict(steps)[0.1] == 2 and dict(steps)[0.25] == 3
    assert dict(steps)[float("inf")] == 3
    assert dict(waits)[0.005] == 1 and dict(waits)[0.05] == 2 and dict(waits)[float("inf")] == 2
    assert bucket_quantile(waits, 0.99) == 0.05
    assert "saga_step_kafka_wait_seconds_sum 0.034" in text
