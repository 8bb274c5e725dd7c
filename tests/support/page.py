"""A headless Chromium page driven by Selenium (Debian's chromium and chromium-driver: the
browser Selenium would download cannot be reached from here), for the dashboard tests.
Selenium is synchronous: every call runs in a thread, so the test's event loop (and the
participant simulators on it) keeps running while the browser waits."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

__all__ = ["SCREENSHOTS", "Page"]

#: Where the dashboard tests keep their screenshots (artifacts; git-ignored).
SCREENSHOTS = Path(__file__).resolve().parents[1] / "e2e" / "screenshots"


class Page:
    def __init__(self, width: int = 1280, height: int = 900) -> None:
        chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
        if chromium is None or driver is None:
            raise RuntimeError("chromium and chromium-driver are needed: run `make browser` (or make test)")
        opts = webdriver.ChromeOptions()
        opts.binary_location = chromium
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--window-size={width},{height}",
        ):
            opts.add_argument(arg)
        self.driver = webdriver.Chrome(service=Service(driver), options=opts)

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def open(self, url: str) -> Page:
        await self.run(self.driver.get, url)
        return self

    async def js(self, script: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, script, *args)

    async def until(self, script: str, within: float, what: str) -> Any:
        """The value of `script` (a JS expression) once truthy; fails saying what it waited for."""
        deadline = time.monotonic() + within
        while True:
            value = await self.js(f"return ({script});")
            if value:
                return value
            if time.monotonic() > deadline:
                body = await self.js("return document.body.innerText")
                raise AssertionError(
                    f"the dashboard did not show {what} within {within}s; page:\n{body[:3000]}"
                )
            await asyncio.sleep(0.25)

    async def click(self, css: str) -> None:
        """Click the first element `css` finds. The page redraws its tables at each refresh:
        an element found just before a redraw is gone when clicked (stale), so it is found
        again, a few times at most."""

        def go() -> None:
            for attempt in range(5):
                try:
                    self.driver.find_element(By.CSS_SELECTOR, css).click()
                    return
                except StaleElementReferenceException:
                    if attempt == 4:
                        raise

        await self.run(go)

    async def type(self, css: str, text: str) -> None:
        def go() -> None:
            box = self.driver.find_element(By.CSS_SELECTOR, css)
            box.clear()
            box.send_keys(text)

        await self.run(go)

    async def answer_prompt(self, text: str | None) -> str:
        """Answer the page's window.prompt (None: dismiss it); return its message."""

        def go() -> str:
            WebDriverWait(self.driver, 10).until(expected_conditions.alert_is_present())
            alert = self.driver.switch_to.alert
            message = alert.text
            if text is None:
                alert.dismiss()
            else:
                alert.send_keys(text)
                alert.accept()
            return message

        return str(await self.run(go))

    async def resize(self, width: int, height: int) -> None:
        await self.run(self.driver.set_window_size, width, height)

    async def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await self.run(self.driver.save_screenshot, str(path))
        return path

    async def close(self) -> None:
        await self.run(self.driver.quit)
