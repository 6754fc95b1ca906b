"""The reader of the chapters' definitions: it runs definitions only, keeps the last one, and names what is missing."""

import json

import pytest
from chapter_code import ChapterCodeError, chapter_namespace, from_chapter


def write_notebook(path, *cells):
    """Write a notebook whose code cells hold `cells`."""
    code = [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": c} for c in cells]
    path.write_text(json.dumps({"cells": code, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_only_definitions_run_and_the_last_one_wins(tmp_path):
    notebook = write_notebook(
        tmp_path / "07_demo.ipynb",
        "try:\n    import d2l_support\nexcept ImportError:\n    %pip install d2l_support",
        "WIDTHS = (4, 8)\nX = 3\n\n\ndef width(i):\n    return WIDTHS[i]",
        "raise RuntimeError('a statement ran')",
        "def width(i):\n    return 2 * WIDTHS[i]",
    )
    namespace = chapter_namespace(notebook)
    assert "X" not in namespace and namespace["WIDTHS"] == (4, 8)
    assert from_chapter(notebook, "width")(1) == 16


def test_missing_and_broken_definitions_are_named(tmp_path):
    notebook = write_notebook(tmp_path / "08_demo.ipynb", "ours = 1", "def draw(x=ours):\n    return x")
    with pytest.raises(ChapterCodeError, match="no top-level definition of 'plot'"):
        from_chapter(notebook, "plot")
    with pytest.raises(ChapterCodeError, match="cannot provide 'draw'.*NameError"):
        from_chapter(notebook, "draw")
