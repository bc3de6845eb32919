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


@pytest.mark.slow
def test_the_course_site_renders_its_home_page_and_a_notebook_with_figures(chromium, tmp_path):
    """`distrinews site` on one fast notebook (01, smoke preset), then both pages opened in the real browser."""
    from playwright.sync_api import sync_playwright

    from distrinews.course import NOTEBOOKS, REPOSITORY, notebook
    from distrinews.site import build_site

    site = tmp_path / "site"
    build_site(site, [notebook("01")], env={"DISTRINEWS_PRESET": "smoke", "OMP_NUM_THREADS": None})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((site / "index.html").as_uri())
            assert page.locator("h1").inner_text() == "DistriNews: learn distributed data-parallel training"
            headings = page.locator("h2").all_inner_texts()
            assert headings == ["What you will learn", "The notebooks", "Run it on Kaggle", "Demo and source"]
            listed = page.locator("ol.notebooks li").all_inner_texts()
            assert len(listed) == 1 and "ran in" in listed[0] and "on the smoke preset" in listed[0]
            assert page.locator(f'a[href="{REPOSITORY}"]').count() == 1
            page.locator('a[href="01_data.html"]').click()
            page.wait_for_load_state("load")
            box = page.locator(".distrinews-run").first
            assert "Ran on the smoke preset" in box.inner_text() and "SYNTHETIC" in box.inner_text()
            assert box.bounding_box()["y"] < page.locator("h1").first.bounding_box()["y"], "run box above the H1"
            sizes = page.eval_on_selector_all("img", "all => all.map(i => [i.complete, i.naturalWidth, "
                                                     "i.naturalHeight])")
            figures = [s for s in sizes if s[1] > 200 and s[2] > 100]
            assert len(figures) >= 2 and all(s[0] for s in sizes), sizes  # the token-length and padding plots
            page.screenshot(path=str(tmp_path / "site-01.png"), full_page=True)
        finally:
            browser.close()
    assert len(NOTEBOOKS) >= 11 and (tmp_path / "site-01.png").stat().st_size > 50_000
