"""The built website (`_build/html`) in headless Chromium: every page loads cleanly, math renders,
figures and explorers are present and respond, search works and internal links resolve.

Without a built site these tests are skipped, unless D2L_REQUIRE_SITE=1 (set by `make test`) makes that an error."""

import functools
import http.server
import json
import os
import re
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
MATHJAX = ROOT / ".venv" / "mathjax"  # MathJax 3 from npm, served in place of the CDN (tests run offline)
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
SKIPPED_PAGES = {"genindex.html", "search.html", "index.html"}  # index.html only redirects
REQUIRED = os.environ.get("D2L_REQUIRE_SITE") == "1"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
REPOSITORY = CONFIG["repository"]["url"].removeprefix("https://github.com/")  # owner/name, as the launch buttons use it

if not (SITE / "index.html").is_file():
    _missing = f"the site is not built ({SITE.relative_to(ROOT)}/index.html is missing): run `make book` or `make test`"
    if REQUIRED:
        pytest.fail(f"{_missing}; D2L_REQUIRE_SITE=1 forbids skipping the site tests", pytrace=False)
    pytest.skip(_missing, allow_module_level=True)


def pages() -> list[str]:
    """Every content page of the built site, relative to its root."""
    found = (p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html"))
    return sorted(p for p in found if not p.startswith("_") and p not in SKIPPED_PAGES)


def chapter_pages() -> list[str]:
    """The pages rendered from notebooks, including the errata page."""
    return [p for p in pages() if (ROOT / p).with_suffix(".ipynb").is_file()]


@pytest.fixture(scope="module")
def server():
    """Serve the built site on a free localhost port."""
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright; no browser is downloaded."""
    if REQUIRED:
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    playwright = sync_playwright().start()
    chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()
    playwright.stop()


@pytest.fixture
def page(browser):
    """A fresh page whose requests stay on localhost, with MathJax served locally and page errors recorded."""
    if not (MATHJAX / "es5" / "tex-mml-chtml.js").is_file():
        pytest.fail(f"MathJax 3 is missing in {MATHJAX}: run `make test` to fetch it")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.route("**/*", _offline_route)
    yield page
    context.close()


def _offline_route(route):
    """Serve MathJax from disk, let localhost through, and refuse everything else."""
    url = route.request.url
    if url.startswith(MATHJAX_CDN):
        route.fulfill(path=str(MATHJAX / urlsplit(url).path.split("/mathjax@3/", 1)[1]))
    elif url.startswith("http://127.0.0.1"):
        route.continue_()
    else:
        route.abort()


def typeset(page) -> None:
    """Wait until MathJax has finished typesetting the page."""
    page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20_000)
    page.evaluate("MathJax.startup.promise")


@pytest.mark.parametrize("path", pages())
def test_page_loads_cleanly(page, server, path):
    page.goto(server + path, wait_until="load")
    assert page.title() and page.locator("main").count() == 1
    math = page.locator(".math").count()
    if math:
        typeset(page)
        assert page.locator("mjx-container").count() >= math, "some math was not rendered"
        assert page.locator("mjx-merror").count() == 0, "MathJax reported a TeX error"
    broken = page.evaluate(
        "[...document.images].filter(i => i.src.startsWith(location.origin) && !i.naturalWidth).map(i => i.src)"
    )
    assert broken == [], f"images that did not load: {broken}"
    assert page.errors == [], f"JavaScript errors: {page.errors}"


@pytest.mark.parametrize("path", [p for p in chapter_pages() if p.startswith("notebooks/")])
def test_chapter_has_figures_an_explorer_and_colab(page, server, path):
    page.goto(server + path, wait_until="load")
    assert page.locator("img[src*='_images/'], .cell_output img").count() > 0, "no figure"
    assert page.locator(".animation input[type=range]").count() > 0, "no kernel-free explorer"
    colab = f"a[href^='https://colab.research.google.com/github/{REPOSITORY}/blob/']"
    assert page.locator(colab).count() > 0, f"no Colab launch button for {REPOSITORY}"
    download = page.locator("a.btn-download-source-button[href$='.ipynb']")
    assert download.count() == 1, "no notebook download button"
    assert ((SITE / path).parent / download.get_attribute("href")).resolve().is_file()


def test_explorer_responds_to_the_slider(page, server):
    path = next(p for p in chapter_pages() if p.startswith("notebooks/"))
    page.goto(server + path, wait_until="load")
    player = page.locator(".animation").first
    frame = player.locator("img")
    before = frame.get_attribute("src")
    slider = player.locator("input[type=range]")
    slider.evaluate("(s) => { s.value = s.max; s.dispatchEvent(new Event('input')); "
                    "s.dispatchEvent(new Event('change')); }")
    assert frame.get_attribute("src") != before, "moving the slider did not change the frame"


def search_index() -> dict:
    """The search index Sphinx wrote, as a dict."""
    text = (SITE / "searchindex.js").read_text(encoding="utf-8")
    return json.loads(text[text.index("(") + 1:text.rindex(")")])


def chinese_term() -> str:
    """The first glossary term written in Chinese characters only, so that it is one search token."""
    glossary = (ROOT / "book" / "glossary.md").read_text(encoding="utf-8")
    terms = re.findall(r"^\| [^|]+ \| ([\u4e00-\u9fff]+) \|", glossary, re.M)[1:]  # row 0 is the header
    return terms[0] if terms else "(the glossary has no such term)"


@pytest.mark.parametrize("term", ["softmax", chinese_term()])
def test_search_finds_terms_in_both_languages(page, server, term):
    if term not in search_index()["terms"]:
        pytest.fail(f"{term!r} is not in the search index")
    page.goto(f"{server}search.html?q={term}", wait_until="load")
    page.wait_for_selector("#search-results ul.search li", timeout=20_000)
    assert page.locator("#search-results ul.search li").count() > 0


def test_front_page_redirects_to_the_introduction(page, server):
    page.goto(server, wait_until="load")
    page.wait_for_url("**/book/intro.html")
    assert "Dive into Deep Learning, Checked" in page.title()


def test_internal_links_resolve():
    broken = []
    for path in pages():
        html = (SITE / path).read_text(encoding="utf-8")
        for href in re.findall(r'href="([^"#:?]+\.html)(#[^"]*)?"', html):
            target = (SITE / path).parent / unquote(href[0])
            if not target.is_file():
                broken.append(f"{path} -> {href[0]}")
            elif href[1] and f'id="{unquote(href[1][1:])}"' not in target.read_text(encoding="utf-8"):
                broken.append(f"{path} -> {href[0]}{href[1]}")
    assert broken == []


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_screenshot_of_a_chapter(page, server, theme):
    path = next(p for p in chapter_pages() if p.startswith("notebooks/"))
    page.goto(server + path, wait_until="load")
    root = "document.documentElement.dataset"
    page.evaluate(f"{root}.theme = '{theme}'; {root}.mode = '{theme}'")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"chapter-{theme}.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    dark = [int(v) for v in re.findall(r"\d+", background)[:3]]
    assert (sum(dark) < 200) == (theme == "dark"), f"{theme} mode has background {background}"


def test_chinese_terms_render_in_the_glossary(page, server):
    page.goto(server + "book/glossary.html", wait_until="load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "glossary.png"))
    glyphs = []
    for character in "权重":  # without a CJK font both would be the same empty box
        page.evaluate("(c) => { const s = document.createElement('span'); s.id = 'glyph'; s.textContent = c; "
                      "s.style.fontSize = '64px'; document.querySelector('main').prepend(s); }", character)
        glyphs.append(page.locator("#glyph").screenshot())
        page.evaluate("document.getElementById('glyph').remove()")
    assert glyphs[0] != glyphs[1], "Chinese characters render as boxes: install a CJK font (fonts-noto-cjk)"
