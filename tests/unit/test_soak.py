"""The soak's arithmetic (chaos/soak.py): steps per interval from the workers' histograms, and
the trend verdict over the samples."""

from __future__ import annotations

from chaos.soak import Sample, steps_in_interval, throughput, trend

INF = float("inf")


def test_steps_in_interval_are_each_workers_own_difference() -> None:
    before = {1: [(0.1, 10.0), (1.0, 12.0), (INF, 12.0)], 2: [(0.1, 5.0), (1.0, 5.0), (INF, 5.0)]}
    now = {1: [(0.1, 15.0), (1.0, 20.0), (INF, 21.0)], 2: [(0.1, 6.0), (1.0, 8.0), (INF, 8.0)]}
    assert steps_in_interval(now, before) == [(0.1, 6.0), (1.0, 11.0), (INF, 12.0)]


def test_a_restarted_worker_counts_from_zero_and_a_silent_one_adds_nothing() -> None:
    before = {1: [(0.1, 100.0), (INF, 100.0)], 2: [(0.1, 50.0), (INF, 50.0)]}
    # worker 1 was killed and came back as process 3; worker 2 did not answer this time
    now = {3: [(0.1, 4.0), (INF, 7.0)]}
    assert steps_in_interval(now, before) == [(0.1, 4.0), (INF, 7.0)]
    assert steps_in_interval({}, before) is None


def _sample(t: float, rss: float, fds: int = 100, rocks: float = 50.0, ended: int = 0) -> Sample:
    return Sample(t_s=t, rss_mib=rss, fds=fds, rocksdb_mib=rocks, step_p99_ms=50.0, lag=0,
                  sagas_live=10, ended=ended, fault="")


def test_throughput_is_the_slope_of_ended_over_the_loads_second_half() -> None:
    # 10/s in the first half (warming up), 30/s in the second, then the settle after 100 s
    samples = [_sample(t, 500.0, ended=10 * t if t <= 50 else 500 + 30 * (t - 50)) for t in range(0, 130, 10)]
    assert throughput(samples, seconds=100) == 30.0
    assert throughput(samples[:3], seconds=100) is None


def test_the_trend_verdict_sees_growth_after_the_first_cycle_only() -> None:
    flat = [_sample(t, 500.0 + (200.0 if t < 100 else 0.0)) for t in range(0, 400, 10)]
    assert trend(flat, first_cycle_end_s=100)["verdict"] == "no trend up"
    growing = [_sample(t, 500.0 + t) for t in range(0, 400, 10)]
    verdict = trend(growing, first_cycle_end_s=100)
    assert verdict["rss_mib"]["grew"] is True and verdict["verdict"] != "no trend up"
    assert "too short" in trend(flat[:5], first_cycle_end_s=0)["verdict"]


def test_rocksdb_may_grow_by_the_tombstones_of_the_sagas_ended_meanwhile() -> None:
    # 10,000 sagas ended per 10 s; RocksDB grows 5 MiB per 10 s (~524 bytes a saga): tombstones
    tombstones = [_sample(t, 500.0, rocks=100.0 + t / 2, ended=1000 * t) for t in range(0, 400, 10)]
    verdict = trend(tombstones, first_cycle_end_s=0)
    assert verdict["rocksdb_mib"]["grew"] is False and verdict["verdict"] == "no trend up"
    assert verdict["rocksdb_mib"]["tombstones_allowed_mib"] > 0
    # the same growth with no saga ended is a leak
    leak = [_sample(t, 500.0, rocks=100.0 + t / 2, ended=0) for t in range(0, 400, 10)]
    assert trend(leak, first_cycle_end_s=0)["rocksdb_mib"]["grew"] is True
