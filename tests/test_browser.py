"""The demo in a real browser: `distrinews serve`, headless Chromium types a headline and sees a label."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from conftest import ROOT, free_port, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LABELS = re.compile(r"World|Sports|Business|Sci/Tech")


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found: install it with `apt-get install -y chromium` (.ci/run does)"
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(message)  # in CI a missing browser is a broken setup, never a silent skip
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def served_demo(smoke_run, tmp_path_factory):
    """`distrinews serve` on a free loopback port, stopped at teardown."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, "-m", "distrinews", "serve", "--checkpoint", str(smoke_run / "checkpoint"),
               "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with running_server(command, url, log, env=env):
        assert f"DistriNews demo: {url} (Ctrl+C to stop)" in log.read_text()
        yield url


def test_a_headline_typed_in_the_browser_gets_a_label(chromium, served_demo, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    screenshot = tmp_path / "space-prediction.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(served_demo, timeout=60_000)
            textbox = page.get_by_label("Headline")
            textbox.fill("Late goal sends the home side into the cup final")
            page.get_by_role("button", name="Classify", exact=True).click()
            expect(page.locator("#prediction")).to_contain_text(LABELS, timeout=30_000)
            expect(page.locator("#note")).to_contain_text("Last call:", timeout=30_000)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("DISTRINEWS_ARTIFACTS"):
        artifacts = Path(os.environ["DISTRINEWS_ARTIFACTS"])
        artifacts.mkdir(parents=True, exist_ok=True)
        shutil.copy2(screenshot, artifacts / screenshot.name)
