"""The fault harness's scenarios (chaos/), reduced: fewer sagas, shorter outages. Each asserts
outcomes only: every saga started ended as the participants' choices call for, once. The
timings (recovery, snapshot catch-up) are printed by `make chaos`, never asserted here.

These stop and start parts of the local stack, so they run after every other test
(tests/conftest.py orders the `faults` marker last)."""

from __future__ import annotations

import pytest

from chaos.harness import Row
from chaos.scenarios import SCENARIOS, Size

pytestmark = [pytest.mark.stack, pytest.mark.faults]

SMALL = Size(rate=15.0, seconds=12.0, outage_s=4.0, pg_outage_s=6.0, hostile=300)


def _clean(row: Row) -> None:
    assert row.started >= SMALL.rate * SMALL.seconds * 0.9, row
    assert (row.wrongly, row.not_ended, row.twice) == (0, 0, 0), row
    assert row.as_expected == row.started, row


@pytest.mark.parametrize("scenario", ["kill", "kafka", "pulsar", "duplicates", "kafka3"])
async def test_every_saga_ends_as_expected_under(scenario: str) -> None:
    row = await SCENARIOS[scenario](SMALL)
    _clean(row)
    if scenario != "duplicates":
        assert row.recovery_s is not None, "the probe sagas never started on every partition"


async def test_postgres_down_then_the_snapshots_catch_up() -> None:
    row = await SCENARIOS["postgres"](SMALL)  # raises unless the snapshots equal the tables
    _clean(row)
    assert "snapshots equal the tables" in row.note


async def test_hostile_messages_are_all_dead_lettered_and_change_no_saga() -> None:
    row = await SCENARIOS["hostile"](SMALL)  # raises unless each one is dead-lettered with a reason
    _clean(row)
    assert "missing: 0, without a reason: 0" in row.note
