"""The chapters' own definitions, read from their notebooks, so that tests and benchmarks check the code readers run.

A notebook's top-level imports, functions, classes and UPPER_CASE constants are executed in order, in a fresh
namespace holding `torch`, `nn`, `F` and `d2l`; every other statement (training, plots, printed checks) is skipped.
A name the notebook defines twice keeps its last definition, as in the notebook.

    alexnet = from_chapter("10_alexnet", "alexnet")
    vgg_block, vgg = from_chapter("11_vgg", "vgg_block", "vgg")

The namespace is built once per notebook and shared: a test that swaps a definition does it with
`monkeypatch.setitem(chapter_namespace(...), name, replacement)`, which restores it afterwards.
"""

import ast
import functools
import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import d2l_support

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CONSTANT = re.compile(r"[A-Z][A-Z_]*[A-Z][A-Z0-9_]*")  # PEP 8's constants; X, K or W1 are math variables


class ChapterCodeError(LookupError):
    """A name the chapter does not define, or whose definition cannot run without the chapter's statements."""


def notebook_path(notebook: str | Path) -> Path:
    """The file of a chapter given as "10_alexnet", or any notebook given by its path."""
    path = Path(notebook)
    return path.resolve() if path.suffix == ".ipynb" else NOTEBOOKS / f"{notebook}.ipynb"


def defined_names(node: ast.stmt) -> list[str] | None:
    """The names a top-level statement defines, or None when it is not a definition."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [(alias.asname or alias.name).split(".")[0] for alias in node.names]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    names = [t.id for t in targets if isinstance(t, ast.Name)]
    if names and len(names) == len(targets) and all(CONSTANT.fullmatch(name) for name in names):
        return names
    return None


def without_magics(source: str) -> str:
    """The cell's code with IPython magic and shell lines (% or !) replaced by `pass` at the same indentation."""
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("%", "!")):
            lines[i] = line[: len(line) - len(line.lstrip())] + "pass"
    return "\n".join(lines)


@functools.cache
def load(path: Path) -> tuple[dict, dict[str, str]]:
    """Execute a notebook's definitions; return the namespace and, for each definition that failed, why."""
    namespace = {"__name__": path.stem, "torch": torch, "nn": nn, "F": F, "d2l": d2l_support}
    failed = {}
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        where = f"{path.name}, cell {index}"
        for node in ast.parse(without_magics(source), filename=where).body:
            names = defined_names(node)
            if names is None:
                continue
            try:
                exec(compile(ast.Module([node], type_ignores=[]), where, "exec"), namespace)
            except Exception as error:  # a definition needing a value that only the chapter's statements compute
                failed.update((name, f"its definition ({where}) raised {type(error).__name__}: {error}")
                              for name in names)
            else:
                for name in names:
                    failed.pop(name, None)
    return namespace, failed


def chapter_namespace(notebook: str | Path) -> dict:
    """Every top-level definition of a chapter's notebook, by name (built once per notebook, then shared)."""
    return load(notebook_path(notebook))[0]


def from_chapter(notebook: str | Path, *names: str):
    """The chapter's own objects of these names: one object for one name, else a tuple in the order asked."""
    path = notebook_path(notebook)
    namespace, failed = load(path)
    found = []
    for name in names:
        if name in failed:
            raise ChapterCodeError(f"notebooks/{path.name} cannot provide {name!r}: {failed[name]}")
        if name not in namespace:
            own = sorted(key for key in namespace if not key.startswith("__"))
            raise ChapterCodeError(f"notebooks/{path.name} has no top-level definition of {name!r}; "
                                   f"it defines: {', '.join(own)}")
        found.append(namespace[name])
    return found[0] if len(found) == 1 else tuple(found)
