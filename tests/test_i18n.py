"""The Chinese edition's machinery: the Markdown translator, the catalog checks, the Chinese notebooks, the
generated Chinese pages and the Chinese site's configuration. `make test` also runs `tools/i18n.py check`
against the English of the working tree; the site itself is checked in tests/test_site.py."""

import sys
from pathlib import Path

import nbformat
import polib
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import bilingual  # noqa: E402
import i18n  # noqa: E402
import make_pages  # noqa: E402
from markdown_translation import EXTENSIONS, key, translate  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
MINI_CONFIG = """\
title: Mini
only_build_toc_files: true
exclude_patterns: ["_build/*", "locales/*"]
execute:
  execute_notebooks: "off"
sphinx:
  config:
    gettext_compact: false
"""
FIRST = "The first paragraph says what the page is about."
SECOND = "The second paragraph gives a number, 42."


def test_the_translator_parses_markdown_as_the_book_does():
    assert set(EXTENSIONS) == set(CONFIG["parse"]["myst_enable_extensions"])


def test_translate_replaces_blocks_and_keeps_markup_math_and_code():
    english = ("# A title\n\nA paragraph\nover two lines with $x$.\n\n- an item\n  that continues\n- short\n\n"
               "```{admonition} Box title\n:class: warning\nInside the box.\n```\n\n"
               "$$\ny = x\n$$\n\n| head | other |\n|---|---|\n| cell | short |\n\n"
               "```python\nshort\n```\n")
    chinese = {"A title": "标题", "A paragraph over two lines with $x$.": "含 $x$ 的一段。",
               "an item that continues": "一项", "short": "短", "Box title": "框标题",
               "Inside the box.": "框内。", "y = x": "y = x", "head": "表头", "cell": "单元格"}
    expected = ("# 标题\n\n含 $x$ 的一段。\n\n- 一项\n- 短\n\n"
                "```{admonition} 框标题\n:class: warning\n框内。\n```\n\n"
                "$$\ny = x\n$$\n\n| 表头 | other |\n|---|---|\n| 单元格 | 短 |\n\n"
                "```python\nshort\n```\n")
    assert translate(english, chinese.get) == expected


def test_translate_nested_directives_keep_their_indentation_and_options():
    english = "````{solution} ex-1\n:class: dropdown\nWe compute it.\n\n```python\nx = 1\n```\n````\n"
    chinese = english.replace("We compute it.", "我们来计算。")
    assert translate(english, {"We compute it.": "我们来计算。"}.get) == chinese
    assert translate(english, {}.get) == english
    indented = "- an item\n\n  ```{note}\n  :class: tip\n  Inside.\n  ```\n"
    assert translate(indented, {"Inside.": "里面。"}.get) == indented.replace("Inside.", "里面。")


@pytest.fixture(scope="module")
def english_templates(tmp_path_factory) -> Path:
    """The messages Sphinx extracts from the book as it is now (one gettext build, about ten seconds)."""
    copy = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        (copy / name).write_text((ROOT / name).read_text(encoding="utf-8"), encoding="utf-8")
    for folder in ("book", "notebooks"):
        (copy / folder).symlink_to(ROOT / folder)
    return i18n.extract(copy)


def test_every_extracted_message_is_placed_in_the_chinese_notebooks_and_pages(english_templates):
    captions = {key(part["caption"]) for part in yaml.safe_load((ROOT / "_toc.yml").read_text())["parts"]}
    unplaced = []
    for doc, pot in i18n.templates(english_templates).items():
        messages = {key(m.msgid) for m in polib.pofile(str(pot))} - captions - {key(CONFIG["title"])}
        placed = set()

        def mark(text, placed=placed, messages=messages):
            placed.add(text)
            return "⟦⟧" if text in messages else None
        path = ROOT / f"{doc}.ipynb"
        if path.is_file():
            cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]
        else:
            cells = [(ROOT / f"{doc}.md").read_text(encoding="utf-8")]
        for cell in cells:
            translate(cell, mark)
        unplaced += [f"{doc}: {text[:80]}" for text in sorted(messages - placed)]
    assert unplaced == [], "messages the Chinese notebooks would leave in English"


def test_catalogs_have_no_fuzzy_obsolete_or_unexpected_empty_entry():
    problems = i18n.catalog_problems()
    stats = i18n.statistics()
    print(f"translation pending for {stats['pending pages']} pages, {stats['pending messages']} messages")
    assert problems == [], i18n.report(problems)


def test_the_pending_list_names_pages_that_are_still_incomplete(tmp_path):
    catalogs = tmp_path / "LC_MESSAGES"
    _write_catalog(catalogs / "book" / "done.po", {FIRST: "第一段。"})
    _write_catalog(catalogs / "book" / "half.po", {FIRST: "第一段。", SECOND: ""})
    pending = tmp_path / "pending.txt"
    pending.write_text("# comment\nbook/half\n", encoding="utf-8")
    assert i18n.catalog_problems(catalogs, pending_file=pending, source=tmp_path) == []
    pending.write_text("book/half\nbook/done\nbook/gone\n", encoding="utf-8")
    kinds = sorted(p.kind for p in i18n.catalog_problems(catalogs, pending_file=pending, source=tmp_path))
    assert kinds == ["complete: remove it from pending.txt", "listed as pending but there is no such page"]
    pending.write_text("", encoding="utf-8")
    [problem] = i18n.catalog_problems(catalogs, pending_file=pending, source=tmp_path)
    assert problem.kind == "untranslated" and problem.english == SECOND


def _write_catalog(path: Path, entries: dict[str, str]) -> None:
    """Write a small catalog with polib."""
    catalog = polib.POFile()
    catalog.metadata = {"Content-Type": "text/plain; charset=utf-8", "Language": "zh_CN"}
    for number, (english, chinese) in enumerate(entries.items(), start=1):
        catalog.append(polib.POEntry(msgid=english, msgstr=chinese, occurrences=[("book/x.md", str(number))]))
    path.parent.mkdir(parents=True, exist_ok=True)
    catalog.save(str(path))


def _mini_book(root: Path, second: str) -> None:
    """Write a one-page book whose second paragraph is `second`."""
    (root / "_config.yml").write_text(MINI_CONFIG, encoding="utf-8")
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\n", encoding="utf-8")
    (root / "intro.md").write_text(f"# Mini\n\n{FIRST}\n\n{second}\n", encoding="utf-8")


def _translate_all(po: Path, chinese: dict[str, str]) -> None:
    """Fill in a catalog's translations and mark none fuzzy, as a translator does."""
    catalog = polib.pofile(str(po))
    for entry in catalog:
        entry.msgstr = chinese[entry.msgid]
        entry.flags = [flag for flag in entry.flags if flag != "fuzzy"]
        entry.previous_msgid = None
    catalog.save()


def test_a_changed_english_sentence_fails_the_check_until_its_translation_is_updated(tmp_path):
    _mini_book(tmp_path, SECOND)
    catalogs, nothing_pending = tmp_path / "locales", tmp_path / "pending.txt"
    assert i18n.update(tmp_path, catalogs) == ["intro"]
    po = catalogs / "intro.po"
    _translate_all(po, {"Mini": "迷你", FIRST: "第一段说明本页的内容。", SECOND: "第二段给出一个数字：42。"})

    def check():
        return i18n.catalog_problems(catalogs, i18n.extract(tmp_path), nothing_pending, tmp_path)
    assert check() == []

    changed = SECOND.replace("42", "43")
    _mini_book(tmp_path, changed)
    missing = check()
    assert [(p.kind, p.english) for p in missing] == [("missing from the catalog", changed),
                                                     ("no longer in the English", "")]
    assert missing[1].previous == SECOND and missing[0].where == "intro.md:5"

    i18n.update(tmp_path, catalogs)  # `make catalogs`: the entry turns fuzzy, the old English kept beside it
    [stale] = check()
    assert stale.kind.startswith("fuzzy") and stale.previous == SECOND and stale.english == changed
    entry = next(e for e in polib.pofile(str(po)) if e.msgid == changed)
    assert stale.where == f"locales/intro.po:{entry.linenum} (intro.md:5)"
    text = i18n.report([stale])
    assert SECOND in text and changed in text and "第二段给出一个数字：42。" in text and i18n.REFRESH in text

    _translate_all(po, {"Mini": "迷你", FIRST: "第一段说明本页的内容。", changed: "第二段给出一个数字：43。"})
    assert check() == []


def test_a_long_previous_english_is_written_so_that_it_reads_back_and_survives_a_refresh(tmp_path):
    long = " ".join([SECOND] * 8)  # wraps over several lines of the catalog
    _mini_book(tmp_path, long)
    catalogs = tmp_path / "locales"
    i18n.update(tmp_path, catalogs)
    po = catalogs / "intro.po"
    _translate_all(po, {"Mini": "迷你", FIRST: "第一段说明本页的内容。", long: "第二段给出一个数字：42。" * 8})
    changed = long.replace("42", "43", 1)
    _mini_book(tmp_path, changed)
    for _ in range(2):  # the second refresh finds the English unchanged and keeps the entry as it is
        i18n.update(tmp_path, catalogs)
        entry = next(e for e in polib.pofile(str(po)) if e.msgid == changed)
        assert entry.fuzzy and entry.previous_msgid == long and not entry.tcomment
    assert i18n.update(tmp_path, catalogs) == []


def test_prose_with_a_percent_sign_or_braces_is_not_marked_as_a_format_string(tmp_path):
    _mini_book(tmp_path, "Over 90% of the weights sit in $\\{0, 1\\}$, and 5 %s of {name}.")
    i18n.update(tmp_path, tmp_path / "locales")
    assert [e.flags for e in polib.pofile(str(tmp_path / "locales" / "intro.po"))] == [[], [], []]


def test_an_edit_that_leaves_nothing_translated_is_not_reported_as_fuzzy(tmp_path):
    _mini_book(tmp_path, SECOND)
    catalogs = tmp_path / "locales"
    i18n.update(tmp_path, catalogs)
    _mini_book(tmp_path, SECOND.replace("42", "43"))
    i18n.update(tmp_path, catalogs)
    assert not any(entry.fuzzy or entry.obsolete for entry in polib.pofile(str(catalogs / "intro.po")))


def test_chinese_notebook_translates_markdown_and_keeps_code_and_outputs(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(f"# Mini\n\n{FIRST}"),
        nbformat.v4.new_code_cell("print(42)  # The first paragraph", execution_count=1,
                                  outputs=[nbformat.v4.new_output("stream", text="42\n")]),
    ])
    nbformat.write(notebook, tmp_path / "chapter.ipynb")
    catalogs = tmp_path / "LC_MESSAGES"
    _write_catalog(catalogs / "chapter.po", {"Mini": "迷你", FIRST: "第一段。"})
    assert i18n.write_notebooks(catalogs, tmp_path, tmp_path / "zh") == ["chapter"]
    chinese = nbformat.read(tmp_path / "zh" / "chapter.ipynb", as_version=4)
    assert chinese.cells[0].source == "# 迷你\n\n第一段。"
    assert chinese.cells[1] == notebook.cells[1]
    assert i18n.notebook_problems(catalogs, tmp_path, tmp_path / "zh") == []

    notebook.cells[1].outputs[0].text = "43\n"
    nbformat.write(notebook, tmp_path / "chapter.ipynb")
    [problem] = i18n.notebook_problems(catalogs, tmp_path, tmp_path / "zh")
    assert problem.kind == "Chinese notebook out of date"


def test_fuzzy_translations_fall_back_to_english(tmp_path):
    po = tmp_path / "page.po"
    _write_catalog(po, {FIRST: "第一段。", SECOND: "旧的翻译。"})
    catalog = polib.pofile(str(po))
    catalog[1].flags.append("fuzzy")
    catalog.save()
    lookup = i18n.translations(po)
    assert lookup(FIRST) == "第一段。" and lookup(SECOND) is None


def test_every_notebook_page_has_its_chinese_notebook():
    docs = {p.relative_to(i18n.LOCALE).with_suffix("").as_posix() for p in i18n.LOCALE.rglob("*.ipynb")}
    assert docs == set(i18n.notebook_pages())


def test_chinese_status_page_is_generated_from_the_notebooks():
    notebooks = {path: nbformat.read(path, as_version=4) for path in make_pages.NOTEBOOKS}
    chinese = (ROOT / i18n.GENERATED["book/status"]).read_text(encoding="utf-8")
    assert chinese == make_pages.status_page_zh(notebooks), "run `make pages`"
    assert chinese.startswith("# 运行状态\n")


def test_generated_pages_have_no_catalog():
    assert not set(i18n.GENERATED) & set(i18n.catalogs())


def test_site_config_translates_title_and_captions_from_the_root_catalog(tmp_path):
    i18n.site_config(tmp_path)
    config = yaml.safe_load((tmp_path / "_config.yml").read_text(encoding="utf-8"))
    toc = yaml.safe_load((tmp_path / "_toc.yml").read_text(encoding="utf-8"))
    root = i18n.translations(i18n.CATALOGS / f"{toc['root']}.po")
    assert config["title"] == root(key(CONFIG["title"])) and config["title"] != CONFIG["title"]
    assert [part["caption"] for part in toc["parts"]] == [
        root(key(part["caption"])) for part in yaml.safe_load((ROOT / "_toc.yml").read_text())["parts"]]
    assert config["sphinx"]["config"]["language"] == "zh_CN"
    assert config["repository"]["path_to_book"] == i18n.LOCALE.relative_to(ROOT).as_posix()
    assert all(Path(path, f"{name}.py").is_file() for name, path in config["sphinx"]["local_extensions"].items())
    assert config["launch_buttons"] == CONFIG["launch_buttons"]


@pytest.mark.parametrize("pagename, chinese, url", [
    ("book/intro", False, "../zh/book/intro.html"),
    ("book/intro", True, "../../book/intro.html"),
    ("search", False, "zh/search.html"),
    ("search", True, "../search.html"),
])
def test_the_switch_links_to_the_same_page_in_the_other_language(pagename, chinese, url):
    assert bilingual.other_language_url(pagename, chinese) == url


MARKED = "Use $x^2$ and `f(x)` ({ref}`sec-a`), see [A](a.md)."
TITLED = "See {doc}`the notation page <notation>`."


@pytest.mark.parametrize("english, chinese, lost", [
    (MARKED, "用 $x^2$ 和 `f(x)`（{ref}`sec-a`），见 [A](a.md)。", ""),
    (MARKED, "用 $x^3$ 和 `f(x)`（{ref}`sec-a`），见 [A](a.md)。", "$x^2$"),
    (MARKED, "用 $x^2$ 和 f(x)（{ref}`sec-a`），见 [A](a.md)。", "`f(x)`"),
    (MARKED, "用 $x^2$ 和 `f(x)`（见 sec-a），见 [A](a.md)。", "{ref}`sec-a`"),
    (MARKED, "用 $x^2$ 和 `f(x)`（{ref}`sec-a`），见 [A](b.md)。", "](a.md)"),
    (TITLED, "见{doc}`符号说明 <notation>`。", ""),  # a role's explicit title may be translated
    (TITLED, "见{doc}`the notation page <notation>`。", ""),
    (TITLED, "见{doc}`符号说明 <intro>`。", "{doc}`<notation>`"),
    (TITLED, "见符号说明。", "{doc}`<notation>`"),
])
def test_a_translation_that_loses_math_code_a_role_or_a_link_is_reported(english, chinese, lost):
    catalog = polib.POFile()
    catalog.append(polib.POEntry(msgid=english, msgstr=chinese))
    problems = i18n._entry_problems("intro.po", catalog, pending=False)
    assert [p.kind for p in problems] == ([f"markup lost: keep {lost} as in the English"] if lost else [])
