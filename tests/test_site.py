"""The built website (`_build/html`, the Chinese edition in `_build/html/zh`) in headless Chromium: every page
loads cleanly, math renders, figures and explorers are present and respond, search works in both languages,
internal links resolve, every page switches to the same page and section in the other language, and the
Chinese pages show no English paragraph except on the pages whose translation is pending.

Without a built site these tests are skipped, unless D2L_REQUIRE_SITE=1 (set by `make test`) makes that an error."""

import functools
import http.server
import json
import os
import re
import sys
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
CHINESE = "zh/"  # the Chinese site inside the English one
sys.path.insert(0, str(ROOT / "tools"))
import i18n  # noqa: E402

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
    return sorted(p for p in found if "/_" not in f"/{p}" and p.removeprefix(CHINESE) not in SKIPPED_PAGES)


def english_pages() -> list[str]:
    """The content pages of the English site."""
    return [p for p in pages() if not p.startswith(CHINESE)]


def chapter_pages() -> list[str]:
    """The pages rendered from notebooks, including the errata page."""
    return [p for p in english_pages() if (ROOT / p).with_suffix(".ipynb").is_file()]


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


def search_index(site: Path = SITE) -> dict:
    """The search index Sphinx wrote, as a dict."""
    text = (site / "searchindex.js").read_text(encoding="utf-8")
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
    assert_cjk_renders(page)


def assert_cjk_renders(page) -> None:
    """Fail if Chinese characters on the page render as the same empty box."""
    glyphs = []
    for character in "权重":  # without a CJK font both would be the same empty box
        page.evaluate("(c) => { const s = document.createElement('span'); s.id = 'glyph'; s.textContent = c; "
                      "s.style.fontSize = '64px'; document.querySelector('main').prepend(s); }", character)
        glyphs.append(page.locator("#glyph").screenshot())
        page.evaluate("document.getElementById('glyph').remove()")
    assert glyphs[0] != glyphs[1], "Chinese characters render as boxes: install a CJK font (fonts-noto-cjk)"


def chinese_pages() -> list[str]:
    """The content pages of the Chinese site."""
    return [p for p in pages() if p.startswith(CHINESE)]


def test_the_chinese_site_has_every_page_of_the_english_one():
    assert [p.removeprefix(CHINESE) for p in chinese_pages()] == english_pages()


def test_every_page_links_to_the_same_page_in_the_other_language():
    wrong = []
    for path in pages():
        html = (SITE / path).read_text(encoding="utf-8")
        link = re.search(r'<a href="([^"]+)"[^>]*class="[^"]*\bbtn-language-switch\b', html)
        other = path.removeprefix(CHINESE) if path.startswith(CHINESE) else CHINESE + path
        if not link or ((SITE / path).parent / link.group(1)).resolve() != (SITE / other).resolve():
            wrong.append(path)
    assert wrong == [], "pages without a switch to their other language"


def test_chinese_pages_are_declared_chinese():
    assert [p for p in chinese_pages() if '<html lang="zh-CN"' not in (SITE / p).read_text(encoding="utf-8")] == []


def test_chinese_pages_show_no_english_paragraph_unless_their_translation_is_pending():
    pending, left = set(i18n.pending_pages()), {}
    for path in chinese_pages():
        count = len(re.findall(r'class="[^"]*\buntranslated\b', (SITE / path).read_text(encoding="utf-8")))
        if count:
            left[path.removeprefix(CHINESE).removesuffix(".html")] = count
    print(f"translation pending: {len(pending)} pages, {sum(left.values())} English paragraphs on the Chinese site")
    assert {doc: n for doc, n in left.items() if doc not in pending} == {}
    assert pending <= set(left) | {d for d in pending if not (SITE / CHINESE / f"{d}.html").is_file()}, \
        "a pending page shows no English paragraph: remove it from locales/zh_CN/pending.txt"


def test_chinese_sidebar_title_search_box_and_toggle_hints_are_in_chinese():
    html = (SITE / CHINESE / "book" / "intro.html").read_text(encoding="utf-8")
    root = i18n.translations(i18n.CATALOGS / "book" / "intro.po")
    captions = [part["caption"] for part in yaml.safe_load((ROOT / "_toc.yml").read_text())["parts"]]
    assert [c for c in captions if f">{root(c) or c}<" not in html or not root(c)] == [], "untranslated captions"
    assert root(CONFIG["title"]) in html
    settings = yaml.safe_load(i18n.OVERLAY.read_text(encoding="utf-8"))["sphinx"]["config"]
    assert settings["html_theme_options"]["search_bar_text"] in html
    assert f"let toggleHintShow = '{settings['togglebutton_hint']}';" in html


@pytest.mark.parametrize("path", [CHINESE + p for p in chapter_pages()])
def test_chinese_chapter_opens_and_downloads_the_chinese_notebook(path):
    html = (SITE / path).read_text(encoding="utf-8")
    notebook = i18n.LOCALE / Path(path.removeprefix(CHINESE)).with_suffix(".ipynb")
    colab = f"https://colab.research.google.com/github/{REPOSITORY}/blob/{CONFIG['repository']['branch']}/"
    assert colab + notebook.relative_to(ROOT).as_posix() in html, "no Colab button for the Chinese notebook"
    download = re.search(r'<a href="([^"]+\.ipynb)"[^>]*class="[^"]*\bbtn-download-source-button\b', html)
    assert download, "no notebook download button"
    served = ((SITE / path).parent / download.group(1)).resolve()
    assert served.read_bytes() == notebook.read_bytes(), "the download is not the Chinese notebook"


def test_the_switch_lands_on_the_same_section(page, server):
    path = next(p for p in chapter_pages() if p.startswith("notebooks/"))
    page.goto(server + path, wait_until="load")
    section = page.locator("main section[id]").nth(2).get_attribute("id")
    page.goto(f"{server}{path}#{section}", wait_until="load")
    page.locator("a.btn-language-switch").click()
    page.wait_for_url(f"**/{CHINESE}{path}#{section}")
    assert page.locator(f"[id='{section}']").count() == 1, "the Chinese page has no such section"
    page.locator("a.btn-language-switch").click()
    page.wait_for_url(f"{server}{path}#{section}")


def chinese_search_word() -> str:
    """A word of the translated introduction that the Chinese search index holds (split by jieba)."""
    text = i18n.translations(i18n.CATALOGS / "book" / "intro.po")(CONFIG["title"]) or ""
    index = search_index(SITE / CHINESE)
    words = sorted((t for t in index["terms"] if len(t) >= 2 and t in text and re.fullmatch(r"[\u4e00-\u9fff]+", t)),
                   key=len, reverse=True)
    return words[0] if words else "(no Chinese word of the title is in the index)"


def test_chinese_search_finds_chinese_words(page, server):
    word = chinese_search_word()
    page.goto(f"{server}{CHINESE}search.html?q={word}", wait_until="load")
    page.wait_for_selector("#search-results ul.search li", timeout=20_000)
    results = page.locator("#search-results ul.search li a")
    assert results.count() > 0 and "/zh/" in results.first.evaluate("(a) => a.href")


def test_chinese_text_renders_on_a_chinese_page(page, server):
    page.goto(server + CHINESE + "book/intro.html", wait_until="load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "intro-zh.png"))
    assert_cjk_renders(page)
