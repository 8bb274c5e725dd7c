"""The dashboard in a real browser (Debian's Chromium, headless): a saga started during the
test appears on the open page, updating live, with its final state and timeline."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.support.browser import Chromium
from tests.support.flows import ended

pytestmark = pytest.mark.stack


async def _until(browser: Chromium, expression: str, within: float, what: str) -> object:
    deadline = time.monotonic() + within
    while True:
        value = await browser.eval(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            body = await browser.eval("document.body.innerText")
            raise AssertionError(f"the dashboard did not show {what} in {within}s; page:\n{body}")
        await asyncio.sleep(0.25)


async def test_a_saga_started_during_the_test_appears_with_its_final_state(
        spawn, participants, taps, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    await worker.wait_ready(timeout=30)
    browser = await Chromium().open(f"{worker.url}/dashboard")
    try:
        await _until(browser, "document.getElementById('status')?.textContent?.startsWith('updated')",
                     20, "its first refresh")
        # The page is open and polling; only now does the saga start.
        status, body = await worker.post("/api/v1/saga/partner-creation",
                                         {"nombre": "Browser SA", "email": "b@browser.example"})
        assert status == 202
        saga_id = body["saga_id"]
        await taps["lifecycle"].wait_for(lambda t: saga_id in ended(t), 30, "the saga to end")
        row = f"document.querySelector('tr[data-saga-id=\"{saga_id}\"]')"
        shown = f"{row} && {row}.dataset.status === 'completed' && {row}.dataset.status"
        final = await _until(browser, shown, 15, f"saga {saga_id} as completed")
        assert final == "completed"
        count = "document.querySelector('.count[data-status=completed] b').textContent"
        assert await browser.eval(count) == "1"
        # Its timeline, on a click.
        await browser.eval(f"{row}.click()")
        timeline = await _until(
            browser, "Array.from(document.querySelectorAll('#timeline li')).map(li => li.textContent)"
            ".join('\\n').includes('completed') && document.getElementById('timeline').innerText", 10,
            "the timeline")
        assert "started" in timeline and "partner_creation_in_progress" in timeline
        assert timeline.index("started") < timeline.index("completed")
        await browser.screenshot(tmp_path / "dashboard.png")
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    finally:
        await browser.close()
