#!/usr/bin/env python3
"""The README's screenshots, taken from a running deployment with headless Chromium (Selenium,
Debian's chromium and chromium-driver: `make browser`):

- docs/img/dashboard.png and docs/img/dashboard-saga.png: the dashboard of the worker at
  --dashboard (default http://127.0.0.1:6066/dashboard; `make run` in another terminal gives
  it sagas to show), its overview and the page of its newest saga;
- docs/img/grafana.png: the Grafana dashboard at --grafana (default http://127.0.0.1:3000,
  `make full-up` where its image can be had), skipped with a line when Grafana does not answer.

    uv run python scripts/screenshots.py        (make screenshots)

The dashboard asks for the API token: --token, default $SAGA_TOKEN, else $OPERATOR_TOKEN,
else the local one in .stack/api-token (`make run` generates it).

Exit code 0 when the dashboard's screenshots were taken, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from test_saga_integration import default_token

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"


def browser(width: int, height: int) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def until(driver: webdriver.Chrome, script: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if driver.execute_script(f"return ({script});"):
            return True
        time.sleep(0.5)
    return False


def answers(url: str, token: str | None = None) -> bool:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=3):
            return True
    except OSError:
        return False


def give_token(driver: webdriver.Chrome, token: str) -> None:
    """Answer the dashboard's prompt for the API token."""
    WebDriverWait(driver, 15).until(expected_conditions.alert_is_present())
    alert = driver.switch_to.alert
    alert.send_keys(token)
    alert.accept()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dashboard", default="http://127.0.0.1:6066/dashboard")
    p.add_argument("--grafana", default="http://127.0.0.1:3000")
    p.add_argument("--token", default=default_token(), help="API token with the read role")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.token:
        print("screenshots: no API token: set SAGA_TOKEN or OPERATOR_TOKEN, or pass --token", file=sys.stderr)
        return 1
    if not answers(args.dashboard, args.token):
        print(f"screenshots: no dashboard at {args.dashboard} for this token: start a worker (make run) "
              "first", file=sys.stderr)
        return 1
    d = browser(1280, 900)
    try:
        d.get(args.dashboard)
        give_token(d, args.token)
        if not until(d, "document.querySelectorAll('#sagas tr.saga').length > 0 && "
                        "document.querySelector('#chart-rate polyline')", 60):
            print("screenshots: the dashboard shows no saga (or no chart) after 60 s", file=sys.stderr)
            return 1
        time.sleep(30)  # half a minute of chart samples
        d.save_screenshot(str(OUT / "dashboard.png"))
        d.execute_script("document.querySelector('#sagas tr.saga').click()")
        until(d, "document.querySelectorAll('#timeline tr').length > 0", 15)
        d.save_screenshot(str(OUT / "dashboard-saga.png"))
        print(f"screenshots: {OUT / 'dashboard.png'}, {OUT / 'dashboard-saga.png'}")
        if answers(f"{args.grafana}/api/health"):
            d.set_window_size(1600, 1000)
            d.get(f"{args.grafana}/d/saga-orchestrator/saga-orchestrator?orgId=1&refresh=5s&kiosk")
            until(d, "document.querySelectorAll('.react-grid-item').length >= 8", 60)
            time.sleep(8)  # the panels' first queries
            d.save_screenshot(str(OUT / "grafana.png"))
            print(f"screenshots: {OUT / 'grafana.png'}")
        else:
            print(f"screenshots: no Grafana at {args.grafana}: its screenshot was not taken (make full-up, "
                  "where the grafana/grafana image can be had)")
    finally:
        d.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
