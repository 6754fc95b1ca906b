"""The helpers a chapter teaches are written out there once, exactly as the package keeps them, and nowhere else."""

import ast
import inspect
import json
from pathlib import Path

import pytest
from chapter_code import without_magics

import d2l_support

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TAUGHT_IN = {"out_size": "08_convolutions", "num_params": "09_lenet", "layer_table": "09_lenet",
             "init_cnn": "10_alexnet", "alexnet": "10_alexnet", "sgd_one_cycle": "10_alexnet"}


def definitions(notebook: Path) -> dict[str, str]:
    """Map each top-level function defined in a notebook's code cells to its source text."""
    found = {}
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        text = without_magics("".join(cell["source"]))
        for node in ast.parse(text).body:
            if isinstance(node, ast.FunctionDef):
                found[node.name] = ast.get_source_segment(text, node)
    return found


@pytest.mark.parametrize("name, chapter", TAUGHT_IN.items())
def test_the_teaching_chapter_shows_the_packages_code(name, chapter):
    shown = definitions(NOTEBOOKS / f"{chapter}.ipynb").get(name)
    assert shown is not None, f"{chapter} no longer defines {name}"
    kept = getattr(d2l_support, name)
    assert shown == inspect.getsource(kept).rstrip(), f"{chapter}'s {name} differs from {kept.__module__}.{name}"


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda path: path.stem)
def test_no_other_chapter_carries_a_copy(notebook):
    copies = {name for name in definitions(notebook) if name in TAUGHT_IN and TAUGHT_IN[name] != notebook.stem}
    assert not copies, f"{notebook.stem} defines {sorted(copies)}: import them from d2l_support instead"
