"""The dashboard in a real browser (Debian's Chromium, headless, driven by Selenium): the
token it asks for at once (none, a wrong one, a read-only one, the operator's), live
updates, filters, search, paging, a saga's page, the needs-attention queue with Retry and
Cancel, live charts, a phone's width. Screenshots go to tests/e2e/screenshots/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from simulators.participants import Behaviour
from tests.support.flows import ended, publish_partners
from tests.support.page import Page
from tests.support.worker import OPERATOR_TOKEN, Worker

pytestmark = pytest.mark.stack

ROWS = "Array.from(document.querySelectorAll('#sagas tr.saga'))"


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    p = Page()
    yield p
    await p.close()


READ_TOKEN = "dashboard-reader-token-0123456789"


async def opened(page: Page, worker: Worker, token: str = OPERATOR_TOKEN) -> Page:
    await page.open(f"{worker.url}/dashboard")
    # Nothing is shown without a token: the page asks for one at once.
    assert "API token" in await page.answer_prompt(token)
    await page.until(
        "document.getElementById('status').textContent.startsWith('updated')", 30, "its first refresh"
    )
    return page


async def test_a_saga_started_during_the_test_appears_and_opens_on_its_own_page(  # type: ignore[no-untyped-def]
    spawn, participants, taps, page
) -> None:
    worker = spawn()
    await worker.wait_ready(timeout=60)
    await opened(page, worker)
    # The page is open and polling; only now does the saga start.
    status, body = await worker.post(
        "/api/v1/saga/partner-creation", {"nombre": "Browser SA", "email": "b@browser.example"}
    )
    assert status == 202
    saga_id = body["saga_id"]
    await taps["lifecycle"].wait_for(lambda t: saga_id in ended(t), 30, "the saga to end")
    row = f"document.querySelector('#sagas tr[data-saga-id=\"{saga_id}\"]')"
    assert (
        await page.until(
            f"{row} && {row}.dataset.status === 'completed' && {row}.dataset.status",
            20,
            f"saga {saga_id} as completed",
        )
        == "completed"
    )
    # The counts are served from a cache shared by every caller (SNAPSHOT_COUNTS_MAX_AGE_S).
    count = "document.querySelector('.count[data-status=completed] b')"
    assert await page.until(f"{count} && {count}.textContent", 20, "the completed count") == "1"
    when = await page.js(f"return {row}.querySelector('[data-label=updated]').textContent")
    assert when.endswith("ago")  # readable, the absolute time in its title
    # Live charts from /metrics: a line and a figure per series once two samples are in.
    await page.until("document.querySelector('#chart-rate polyline')", 20, "the rate chart")
    assert "completed:" in await page.js("return document.getElementById('legend-rate').textContent")
    await page.screenshot("overview")

    await page.js(f"{row}.click()")
    await page.until(
        "!document.getElementById('saga-page').classList.contains('hidden') && "
        "document.querySelectorAll('#timeline tr').length >= 4",
        15,
        "the saga's page",
    )
    timeline = await page.js(
        "return Array.from(document.querySelectorAll('#timeline tr')).map(r => r.dataset.to)"
    )
    assert timeline[0] == "started" and timeline[-1] == "completed"
    assert (
        await page.js(
            "return document.querySelector('#timeline tr:last-child [data-label=\"since start\"]')"
            ".textContent"
        )
    ).startswith("+")
    commands = await page.js(
        "return Array.from(document.querySelectorAll('#commands tr')).map(r => r.dataset.type)"
    )
    assert "CreatePartner" in commands and "SagaCompleted" in commands
    raw = await page.js("return document.getElementById('raw').textContent")
    assert f'"saga_id": "{saga_id}"' in raw and '"status": "completed"' in raw
    assert await page.js("return document.getElementById('retry').disabled") is True  # nothing to retry
    await page.screenshot("saga")


@pytest.mark.parametrize("behaviour", [Behaviour(fail_alliance=0.5)], ids=["half-compensated"])
async def test_filters_search_and_paging(spawn, participants, taps, page, behaviour) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()
    await worker.wait_ready(timeout=60)
    partners = await publish_partners(participants, 30)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 30, 60, "30 sagas to end")
    await opened(page, worker)
    await page.until(f"{ROWS}.length === 25", 20, "a first page of 25 sagas")
    assert await page.js("return document.getElementById('next').disabled") is False
    first = await page.js(f"return {ROWS}.map(r => r.dataset.sagaId)")
    await page.click("#next")
    await page.until(f"{ROWS}.length === 5", 10, "the second page's 5 sagas")
    second = await page.js(f"return {ROWS}.map(r => r.dataset.sagaId)")
    assert not set(first) & set(second)
    await page.click("#first")
    await page.until(f"{ROWS}.length === 25", 10, "the first page again")

    # Several statuses at once, then one by its count's button, then an origin with none.
    await page.until("document.querySelectorAll('#status-filter input').length >= 2", 10, "the status boxes")
    await page.js(
        "document.querySelectorAll('#status-filter input')"
        ".forEach(c => c.checked = ['compensated', 'completed'].includes(c.value))"
    )
    await page.click("#filters button[type=submit]")
    await page.until(
        f"{ROWS}.length === 25 && {ROWS}.every(r => ['compensated', 'completed'].includes(r.dataset.status))"
        f" && new Set({ROWS}.map(r => r.dataset.status)).size === 2",
        10,
        "compensated and completed sagas together",
    )
    await page.js(
        "document.querySelectorAll('#status-filter input')"
        ".forEach(c => c.checked = c.value === 'compensated')"
    )
    await page.click("#filters button[type=submit]")
    await page.until(
        f"{ROWS}.length > 0 && {ROWS}.every(r => r.dataset.status === 'compensated')",
        10,
        "only compensated sagas",
    )
    await page.screenshot("filtered")
    await page.click(".count[data-status=completed]")
    await page.until(
        f"{ROWS}.length > 0 && {ROWS}.every(r => r.dataset.status === 'completed')",
        10,
        "only completed sagas",
    )
    await page.click("#clear")
    await page.js("document.getElementById('origin').value = 'http'")
    await page.click("#filters button[type=submit]")
    await page.until(
        f"{ROWS}.length === 0 && document.getElementById('sagas').textContent.includes('no saga')",
        10,
        "no HTTP-started saga",
    )
    # Search by partner id.
    await page.click("#clear")
    await page.type("#search", partners[7])
    await page.click("#filters button[type=submit]")
    await page.until(
        f"{ROWS}.length === 1 && {ROWS}[0].textContent.includes('{partners[7]}')",
        10,
        "the one saga of that partner",
    )


FAST = {"SAGA_BACKOFF_S": "0.2", "SAGA_UNDO_MAX_ATTEMPTS": "2", "DEADLINE_TICK_S": "0.1"}


@pytest.mark.parametrize("behaviour", [Behaviour(fail_alliance=1.0, fail_revert=1.0)], ids=["undo-fails"])
async def test_needs_attention_and_retry_with_and_without_the_token(  # type: ignore[no-untyped-def]
    spawn, participants, taps, page, behaviour
) -> None:
    worker = spawn(env={**FAST, "API_READ_TOKENS": READ_TOKEN})
    await worker.wait_ready(timeout=60)
    await publish_partners(participants, 3)
    await taps["lifecycle"].wait_for(lambda t: len(ended(t)) == 3, 60, "3 sagas to give up")
    attention = "Array.from(document.querySelectorAll('#attention tr.saga'))"
    notice = "document.getElementById('notice').textContent"

    await page.open(f"{worker.url}/dashboard")
    assert "API token" in await page.answer_prompt(None)  # no token: dismissed, nothing shown
    await page.until("document.getElementById('status').textContent === 'token needed'", 10,
                     "that a token is needed")
    assert "Enter token" in await page.js(f"return {notice}")
    assert await page.js(f"return {attention}.length") == 0
    assert await page.js("return document.getElementById('login').classList.contains('hidden')") is False
    await page.click("#login")  # a wrong one: a 401, said plainly, forgotten, and asked again
    await page.answer_prompt("not-the-token-0123456789")
    again = await page.answer_prompt(OPERATOR_TOKEN)  # asked again, and right
    assert "401" in again and "refused" in again
    await page.until(f"{attention}.length === 3", 20, "3 sagas needing attention")
    assert "gave up after 2 attempts" in await page.js(f"return {attention}[0].textContent")
    assert await page.js("return sessionStorage.getItem('sagaApiToken')") == OPERATOR_TOKEN

    await page.click("#attention tr.saga button")  # the token is kept for the session: not asked
    await page.until(f"{notice}.includes('accepted')", 10, "the retry accepted")
    before = participants.counts["revert_failed"]
    await taps["lifecycle"].wait_for(
        lambda t: sum(len(v) for v in ended(t).values()) >= 4, 60, "the retried saga to give up again"
    )
    for _ in range(100):  # the simulator counts its answer once Pulsar took it: maybe after the saga
        if participants.counts["revert_failed"] > before:
            break
        await asyncio.sleep(0.1)
    assert participants.counts["revert_failed"] > before  # the retry really ran the undo again
    await page.js("document.querySelector('#attention tr.saga').click()")
    await page.until("!document.getElementById('retry').disabled", 15, "a Retry button enabled")
    # The page renders the saga at its next refresh; wait for its state, not only the button.
    await page.until("document.getElementById('raw').textContent.includes('\"partner\"')", 15,
                     "the saga's state shown")
    raw = await page.js("return document.getElementById('raw').textContent")
    assert '"nombre": "Partner' in raw and '@example.com' in raw  # the operator sees the partner
    await page.click("#retry")
    await page.until(f"{notice}.includes('accepted')", 10, "the second retry")

    # A read-only token: the partner's personal data masked, Retry refused (403), said plainly.
    await page.click("#logout")
    await page.until("document.getElementById('status').textContent === 'token needed'", 10,
                     "the token forgotten")
    await page.click("#login")
    await page.answer_prompt(READ_TOKEN)
    await page.until("document.getElementById('raw').textContent.includes('\"nombre\": \"***\"')", 15,
                     "the saga's state with the partner masked")
    raw = await page.js("return document.getElementById('raw').textContent")
    assert '"nombre": "Partner' not in raw and '"email": "p***@example.com"' in raw
    # The saga's page is drawn again with the new token: click once its Retry is enabled.
    await page.until("!document.getElementById('retry').disabled", 15, "a Retry button enabled")
    await page.click("#retry")
    await page.until(f"{notice}.includes('403')", 10, "the retry refused")
    assert "operate" in await page.js(f"return {notice}")
    await page.screenshot("attention-403")

    # A phone's width: the tables turn into labelled cards.
    await page.js("location.hash = '#/'")
    await page.resize(390, 844)
    await page.until(f"{attention}.length === 3", 10, "the queue at a phone's width")
    shown = await page.js(
        "return getComputedStyle(document.querySelector('#attention td'), '::before').content"
    )
    assert shown.strip('"') == "saga"
    await page.screenshot("phone")
