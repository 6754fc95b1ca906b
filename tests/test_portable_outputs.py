"""Outputs that nbval compares exactly must not print round-off, which changes with the CPU's instruction set,
the BLAS build and the thread count: such cells print a verdict (`below 1e-12 -> True`) instead."""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "book").glob("*.ipynb"))

SCIENTIFIC = r"[-+]?\d+\.\d+[eE][-+]?\d+"  # a computed value; thresholds are written without a point, as 1e-12
DIFFERENCE = re.compile(rf"\b(?:difference|diff|error|err|deviation|mismatch|discrepancy)\b\W*?({SCIENTIFIC})", re.I)
TINIEST_RESULT = 1e-18  # below the float64 round-off of any quantity of order 0.01 or more


def roundoff_like(text: str) -> list[str]:
    """The printed values in `text` that look like floating-point round-off."""
    found = [m.group(1) for m in DIFFERENCE.finditer(text)]
    found += [v for v in re.findall(SCIENTIFIC, text) if abs(float(v)) < TINIEST_RESULT and v not in found]
    return found


def strict_output_text(cell) -> str:
    """The text of a cell's outputs that nbval compares, or '' for a cell tagged nbval-ignore-output."""
    if "nbval-ignore-output" in cell.metadata.get("tags", []):
        return ""
    parts = [o.get("text", "") if o.output_type == "stream" else o.get("data", {}).get("text/plain", "")
             for o in cell.get("outputs", [])]
    return "".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_strictly_compared_outputs_print_no_roundoff(path):
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    found = [(c.source.splitlines()[0], roundoff_like(strict_output_text(c))) for c in cells if c.source]
    found = [(first_line, values) for first_line, values in found if values]
    assert not found, (f"cells print round-off {found}: print a verdict such as 'below 1e-12 -> True', "
                       "or tag the cell nbval-ignore-output")


@pytest.mark.parametrize("text, expected", [
    ("dJ/dW1  max abs difference 2.2e-16   allclose -> True", ["2.2e-16"]),
    ("max abs difference 0.0e+00", ["0.0e+00"]),
    ("kernel error: 3.0e-08", ["3.0e-08"]),
    ("100,000,000  3.1000  4.2000  0.5000   5.0e-22", ["5.0e-22"]),
    ("max abs difference below 1e-12 -> True", []),
    ("same iterates as the autograd loop (1e-6): True", []),
    ("   50   5.89e-17   4.12e-01           7.0e+15", []),
    ("test acc 0.842, lr 1.0e-02", []),
])
def test_roundoff_detection(text, expected):
    assert roundoff_like(text) == expected
