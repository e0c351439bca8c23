"""Selenium on Debian's chromium and chromium-driver (never a downloaded browser build), for the
console's tests: a headless browser at 1400 px width that records its console messages and every
request it makes, and writes a full-page screenshot of each page it is asked to."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

from tests.report_browser import FLAGS, chromium_path

DRIVER_HINT = "the console's browser tests need Debian's chromium-driver: apt-get install -y chromium chromium-driver (make test does this)"
WIDTH, HEIGHT = 1400, 1000


def chromedriver_path() -> str:
    for candidate in (shutil.which("chromedriver"), "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError(DRIVER_HINT)


class ConsoleBrowser:
    def __init__(self, profile: Path, shots: list[Path]):
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        opts = Options()
        opts.binary_location = chromium_path()
        for flag in FLAGS:
            if not flag.startswith("--remote-debugging"):
                opts.add_argument(flag)
        opts.add_argument("--headless=new")
        opts.add_argument(f"--user-data-dir={profile}")
        opts.add_argument(f"--window-size={WIDTH},{HEIGHT}")
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(chromedriver_path()), options=opts)
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                    {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        self.shots = shots
        self.logs: list[dict] = []
        self.requests: list[str] = []

    def collect(self) -> None:
        self.logs += self.driver.get_log("browser")
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                self.requests.append(msg["params"]["request"]["url"])

    def console_errors(self, allowed: tuple[str, ...] = ()) -> list[str]:
        """Errors and warnings the pages logged, except those naming an ``allowed`` URL (a 404 a test asked for)."""
        self.collect()
        return [e["message"] for e in self.logs if e["level"] in ("SEVERE", "WARNING")
                and not any(a in e["message"] for a in allowed)]

    def offsite(self, base: str) -> list[str]:
        """Every request over the network to anywhere but ``base`` (the browser's own chrome:// pages
        and data: URLs are not on the network)."""
        self.collect()
        return [u for u in self.requests if u.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp")
                and not (u.startswith(base + "/") or u == base)]

    def shot(self, name: str) -> Path:
        """A full-page PNG of what is on screen, into every screenshot folder."""
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        data = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": WIDTH, "height": max(HEIGHT, size["height"]), "scale": 1}})["data"]
        png = base64.b64decode(data)
        out = None
        for folder in self.shots:
            folder.mkdir(parents=True, exist_ok=True)
            out = folder / f"{name}.png"
            out.write_bytes(png)
        return out

    def close(self) -> None:
        self.driver.quit()


def screenshot_folders(tmp: Path) -> list[Path]:
    folders = [tmp / "screenshots"]
    if os.environ.get("CIRCUITDIFF_SCREENSHOTS"):
        folders.append(Path(os.environ["CIRCUITDIFF_SCREENSHOTS"]))
    return folders
