"""The demo and the course site in a real browser: headless Chromium types a headline into `distrinews serve` and
sees a label; it follows every link of the rendered course site and searches it."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import sys
import threading
import time
from urllib.parse import urldefrag, urlparse
from pathlib import Path

import pytest

from conftest import NOTEBOOK_ENV, ROOT, free_port, running_server

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


@contextlib.contextmanager
def served_folder(folder: Path):
    """A static file server for `folder` on a free loopback port (Material's search fetches its index: no file://)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def course_site(tmp_path_factory) -> Path:
    """The whole course site rendered from the committed notebooks, without executing them (seconds)."""
    from distrinews.course import NOTEBOOKS
    from distrinews.site import build_site

    site = tmp_path_factory.mktemp("course") / "site"
    build_site(site, list(NOTEBOOKS), execute=False)
    return site


OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]  # CDN scripts fail at once, as offline
PAGE_FACTS = """() => ({
    ids: [...document.querySelectorAll("[id], a[name]")].map(e => e.id || e.name),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
    sidebar: [...document.querySelectorAll("nav.md-nav--primary a.md-nav__link[href]")].map(a => a.href),
    prev: [...document.querySelectorAll("a.md-footer__link--prev")].map(a => a.href),
    next: [...document.querySelectorAll("a.md-footer__link--next")].map(a => a.href),
})"""


def crawl(page, start: str) -> tuple[dict, list]:
    """Open `start`, then every same-site page it links to, and so on. Returns {page: PAGE_FACTS of it} and every
    same-site request that failed (a page, a stylesheet, a script, an image)."""
    failed = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.url.startswith(start) and r.status >= 400
            else None)
    page.on("requestfailed", lambda r: failed.append(f"{r.failure} {r.url}")
            if r.url.startswith(start) and r.failure != "net::ERR_ABORTED" else None)  # aborted: we moved on
    facts, queue = {}, [start + "index.html"]
    while queue:
        url = queue.pop()
        if url in facts:
            continue
        response = page.goto(url, wait_until="domcontentloaded")
        assert response is not None and response.ok, f"{url}: {response and response.status}"
        facts[url] = page.evaluate(PAGE_FACTS)
        queue += [urldefrag(href).url for href in facts[url]["links"]
                  if href.startswith(start) and urldefrag(href).url.endswith(".html")]
    return facts, failed


def test_every_link_on_every_page_of_the_course_site_leads_somewhere(chromium, course_site):
    """Every same-site link (the sidebar, previous/next, the breadcrumbs, the home page's list, anchors) opens a page
    that exists and, with a #fragment, an element with that id; no page's own file fails to load. Each page's
    sidebar lists every page, and its footer links the previous and the next one in course order."""
    from playwright.sync_api import sync_playwright

    from distrinews.course import NOTEBOOKS

    started = time.monotonic()
    with served_folder(course_site) as start, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS + OFFLINE)
        try:
            facts, failed = crawl(browser.new_page(viewport={"width": 1280, "height": 900}), start)
        finally:
            browser.close()
    pages = [start + "index.html"] + [start + f"{nb.name}.html" for nb in NOTEBOOKS]
    assert set(pages) <= set(facts), "every page is reached by following links from the home page"
    for here, previous, following in zip(pages, [None] + pages[:-1], pages[1:] + [None]):
        assert set(pages) <= set(facts[here]["sidebar"]), f"{here}'s sidebar lists every page"
        assert facts[here]["prev"] == ([previous] if previous else []), f"{here}: the previous page"
        assert facts[here]["next"] == ([following] if following else []), f"{here}: the next page"
    dead = []
    for here, seen in sorted(facts.items()):
        for href in sorted(set(h for h in seen["links"] if h.startswith(start))):
            target, fragment = urldefrag(href)
            if target not in facts and not (course_site / urlparse(target).path.lstrip("/")).is_file():
                dead.append(f"{href} on {here}")
            elif fragment and target in facts and fragment not in facts[target]["ids"]:
                dead.append(f"{href} on {here}: no #{fragment} there")
            elif ".ipynb" in href:
                dead.append(f"{href} on {here}: a notebook's link must point at its page")
    assert not dead, "dead links:\n" + "\n".join(dead)
    assert not failed, failed
    links = sum(len(seen["links"]) for seen in facts.values())
    print(f"{len(facts)} pages, {links} links checked in {time.monotonic() - started:.0f} s")


def test_the_course_sites_search_box_finds_a_term_on_the_page_that_teaches_it(chromium, course_site):
    """Material's search box, on its index written at build time: `all_reduce` lists notebook 04."""
    from playwright.sync_api import expect, sync_playwright

    with served_folder(course_site) as start, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS + OFFLINE)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(start + "08_inference.html")
            page.locator("label.md-search__icon, .md-search__input").first.click()
            meta = page.locator(".md-search-result__meta")  # "Initializing search" until the index is loaded
            expect(meta).to_have_text("Type to start searching", timeout=30_000)
            page.locator("input.md-search__input").press_sequentially("all_reduce")  # Material searches on keyup
            results = page.locator(".md-search-result__item a")
            expect(results.first).to_be_visible(timeout=20_000)
            hrefs = results.evaluate_all("all => all.map(a => a.href)")
            found = [h for h in hrefs if urlparse(h).path == "/04_ddp_concepts.html"]
            assert found, f"searching all_reduce lists the page of the collectives, 04: {hrefs}"
            page.goto(found[0])  # the result as the reader clicks it: the page, the term highlighted
            assert urlparse(page.url).path == "/04_ddp_concepts.html"
            assert "all_reduce" in page.locator("article").inner_text()
        finally:
            browser.close()


@pytest.mark.slow
def test_the_course_site_renders_its_home_page_and_a_notebook_with_figures(chromium, tmp_path):
    """`distrinews site` on one fast notebook (01, smoke preset), then both pages opened in the real browser."""
    from playwright.sync_api import sync_playwright

    from distrinews.course import NOTEBOOKS, REPOSITORY, notebook
    from distrinews.site import build_site

    site = tmp_path / "site"
    build_site(site, [notebook("01")], env=NOTEBOOK_ENV)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((site / "index.html").as_uri())
            article = page.locator("article")
            assert article.locator("h1").inner_text() == "DistriNews: learn distributed data-parallel training"
            headings = article.locator("h2").all_inner_texts()
            assert headings == ["What you will learn", "The notebooks", "Run it on Kaggle", "Demo and source"]
            listed = page.locator("ol.notebooks li").all_inner_texts()
            assert len(listed) == len(NOTEBOOKS), "every page is listed, executed or not"
            assert "ran in" in listed[1] and "on the smoke preset" in listed[1]
            assert sum("ran in" in item for item in listed) == 1, "only 01 ran in this build"
            assert page.locator(f'article a[href="{REPOSITORY}"]').count() == 1
            page.locator('article a[href="01_data.html"]').click()
            page.wait_for_load_state("load")
            box = page.locator(".distrinews-run")
            assert box.count() == 1, "the run box shows once, at the top"
            assert "Ran on the smoke preset" in box.inner_text() and "SYNTHETIC" in box.inner_text()
            title = page.locator("article h1").first
            assert box.bounding_box()["y"] < title.bounding_box()["y"], "run box above the H1"
            assert "Executed top to bottom in" in page.locator("article").inner_text()
            text = page.locator("article").inner_text()
            assert str(site.resolve()) not in text and str(ROOT) not in text, "no build machine paths on the page"
            sizes = page.eval_on_selector_all("article img", "all => all.map(i => [i.complete, i.naturalWidth, "
                                                             "i.naturalHeight])")
            figures = [s for s in sizes if s[1] > 200 and s[2] > 100]
            assert len(figures) >= 2 and all(s[0] for s in sizes), sizes  # the token-length and padding plots
            page.screenshot(path=str(tmp_path / "site-01.png"), full_page=True)
        finally:
            browser.close()
    assert len(NOTEBOOKS) >= 11 and (tmp_path / "site-01.png").stat().st_size > 50_000
