"""The rolling upgrade from the previous release (chaos/upgrade.py), reduced: two workers of
the previous release (CHANGELOG.md's commit for it, checked in tests/unit/test_release.py)
under load, replaced one at a time by this checkout's code on their data directories.
Outcomes only: every saga ends as the participants' choices call for, once; the longest pause
is printed by `make upgrade-test`, never asserted."""

from __future__ import annotations

import pytest

from chaos.upgrade import longest_pause, rolling_upgrade

pytestmark = [pytest.mark.stack, pytest.mark.faults]


def test_the_longest_pause() -> None:
    assert longest_pause([1.0, 2.0, 6.0], 0.0, 7.0) == 4.0
    assert longest_pause([], 0.0, 3.0) == 3.0


async def test_a_rolling_upgrade_under_load_loses_no_saga() -> None:
    row = await rolling_upgrade(rate=12.0, seconds=30.0)
    assert row.started >= 12.0 * 30.0 * 0.9, row
    assert (row.wrongly, row.not_ended, row.twice) == (0, 0, 0), row
    assert row.as_expected == row.started, row
