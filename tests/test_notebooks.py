"""Conventions every chapter notebook keeps, and the generated pages being up to date."""

import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import make_pages  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "book").glob("*.ipynb"))
REPOSITORY = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]


def code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def tags(cell):
    return set(cell.metadata.get("tags", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_installs_the_package_from_the_repository(path):
    first = code_cells(path)[0].source
    assert "import d2l_support" in first and "except ImportError" in first
    assert f'"d2l_support @ git+{REPOSITORY}"' in first
    assert "seed_everything" in first and "start_clock" in first


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_executed_without_errors(path):
    for cell in code_cells(path):
        assert cell.execution_count is not None, f"unexecuted cell: {cell.source[:60]!r}"
        assert all(o.output_type != "error" for o in cell.outputs), f"error output in: {cell.source[:60]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_last_cell_reports_provenance(path):
    last = code_cells(path)[-1]
    assert "report_provenance" in last.source and "nbval-ignore-output" in tags(last)
    assert make_pages.provenance(nbformat.read(path, as_version=4)), "no printed provenance block"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_explorers_are_tagged(path):
    for cell in code_cells(path):
        if "frames_player(" in cell.source or "live_explorer(" in cell.source:
            assert "nbval-ignore-output" in tags(cell), cell.source[:60]
        if re.search(r"^\S.*live_explorer\(", cell.source, re.M):
            assert "remove-output" in tags(cell), "a live widget would be dead on the static site"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.parent.name == "notebooks"], ids=lambda p: p.name)
def test_chapter_has_one_title_exercises_and_an_explorer(path):
    notebook = nbformat.read(path, as_version=4)
    markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert len(re.findall(r"^# ", markdown, re.M)) == 1
    assert "```{exercise}" in markdown and "```{solution}" in markdown
    assert any("frames_player(" in c.source for c in code_cells(path))
    assert re.match(r"\d\d_[a-z0-9_]+\.ipynb$", path.name)


def test_every_notebook_is_in_the_table_of_contents():
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r"file: ((?:notebooks|book)/[\w]+)", toc))
    assert {f"{p.parent.name}/{p.stem}" for p in NOTEBOOKS} <= listed


def test_generated_pages_are_up_to_date():
    notebooks = {path: nbformat.read(path, as_version=4) for path in make_pages.NOTEBOOKS}
    assert (ROOT / "book" / "status.md").read_text(encoding="utf-8") == make_pages.status_page(notebooks)
    assert (ROOT / "book" / "glossary.md").read_text(encoding="utf-8") == make_pages.glossary_page(notebooks)


def test_glossary_parsing():
    cell = nbformat.v4.new_markdown_cell("A **weight decay** (权重衰减) term and **bold** (not a term).")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Chapter"), cell])
    terms = make_pages.glossary_terms({Path("05_x.ipynb"): notebook})
    assert list(terms) == ["weight decay"] and terms["weight decay"][1] == "权重衰减"


def test_status_page_reads_targets_and_full_scale_time():
    install = nbformat.v4.new_code_cell("try:\n    import d2l_support\nexcept ImportError:\n    %pip install x")
    checks = nbformat.v4.new_code_cell(
        "d2l.assert_quality(a, full=0.88, quick=0.4)\nd2l.assert_quality(b, full=0.88, quick=0.5)\n"
        "d2l.assert_quality(ppl, full=1.4, quick=3, name='perplexity', lower_is_better=True)")
    notebook = nbformat.v4.new_notebook(cells=[install, checks])
    assert make_pages.quality_targets(notebook) == ["test accuracy >= 0.88", "perplexity <= 1.4"]
    runs = {}
    for name, scale, seconds in [("a", "full", "90 s"), ("b", "quick", "20 s"), ("c", "full", "30 s")]:
        run = nbformat.v4.new_code_cell()
        run.outputs = [nbformat.v4.new_output("stream", text=f"Provenance\n  scale  {scale}\n  wall time  {seconds}\n")]
        runs[Path(name)] = nbformat.v4.new_notebook(cells=[run])
    assert make_pages.full_scale_minutes(runs) == (2.0, 2)
