"""Every result-like number in the prose appears in an output of the same page, or is a declared quoted constant.

A notebook's prose is its markdown; a number there must be printed by one of its outputs (any cell, ignored ones
included) or, for a setting, written in one of its code cells. A prose page (book/*.md but the generated ones,
README.md) shows no outputs of its own: its numbers must be in its own code blocks or on the status page, which
collects every chapter's run. A number quoted from elsewhere is declared with its source in
tests/quoted_numbers.yml. CONTRIBUTING.md ("Numbers in the prose") says what counts as result-like.
"""

import math
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "book").glob("*.ipynb"))
GENERATED = {"status.md", "glossary.md"}
PROSE_PAGES = [p for p in sorted((ROOT / "book").glob("*.md")) if p.name not in GENERATED] + [ROOT / "README.md"]
STATUS = ROOT / "book" / "status.md"
QUOTED = ROOT / "tests" / "quoted_numbers.yml"

UNIT_WORDS = (
    r"minutes?|min|seconds?|s|hours?|ms|images/s|examples/s|tokens/s|images per second|examples per second"
    r"|tokens per second|steps|iterations|updates|epochs?|percentage points|points|GiB|MiB|GB|MB|KB|times"
    r"|million|thousand|M"
)
PROSE_NUMBER = re.compile(
    r"(?<![\w.,/^_{\\-])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?:\s*(?:×|\\times)\s*10\s*\^\s*\{?(?P<exp>[-−]\s*\d+|\d+)\}?|e(?P<eexp>[-+]?\d+))?"
    r"(?P<pct>\s*(?:\\?%|per ?cent))?"
    rf"(?:[\s~-]*(?P<unit>{UNIT_WORDS})(?![\w/]))?"
    r"(?![\w.]\d|\.\d|,\d{3}|/\d)"
)
OUTPUT_NUMBER = re.compile(r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.]\d)", re.I)
NOT_RESULTS = re.compile(
    r"(?:chapters?|sections?|parts?|eq\.|equation|figure|fig\.|table|exercise|version|python|torch|pytorch"
    r"|torchvision|d2l|jupyter-book|sphinx|§|#|图|表)\s*$",
    re.I,
)
REFERENCES = re.compile(r"\b(?:chapters?|sections?)\s+\d+(?:\s*(?:,|and|to|or|–|-)\s*\d+)+", re.I)
YEAR = re.compile(r"(?:19|20)\d\d(?:s|’s|'s)?")
SCALE_OF_UNIT = {"minute": 60, "minutes": 60, "min": 60, "hour": 3600, "hours": 3600, "ms": 1e-3,
                 "million": 1e6, "M": 1e6, "thousand": 1e3, "points": 0.01, "percentage points": 0.01}
ARITHMETIC = {"__builtins__": {"round": round, "abs": abs, "min": min, "max": max, "sum": sum}, "math": math}
MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$|\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.S)


@dataclass(frozen=True)
class Number:
    """A number in the prose: its key (as written, e-notation for powers of ten), value, precision and sentence."""

    key: str
    value: float
    step: float
    percent: bool
    unit: str
    sentence: str


FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*(.*?)\s*$")
CODE_DIRECTIVES = ("{code-block}", "{code-cell}", "{code}", "{sourcecode}")


def split_fences(source):
    """Split markdown into (prose, code): fenced code blocks go to code, MyST directives' bodies stay prose."""
    prose, code, stack = [], [], []
    for line in source.splitlines():
        fence = FENCE.match(line)
        in_code = bool(stack) and stack[-1][1]
        if fence and stack and fence[1][0] == stack[-1][0][0] and len(fence[1]) >= len(stack[-1][0]) and not fence[2]:
            stack.pop()
            continue
        if fence and not in_code:
            stack.append((fence[1], not fence[2].startswith("{") or fence[2].startswith(CODE_DIRECTIVES)))
            continue
        (code if in_code else prose).append(line)
    return "\n".join(prose), "\n".join(code)


def markdown_prose(source):
    """The prose of a markdown source, without code, link targets, HTML, labels and directive options."""
    text = split_fences(source)[0]
    text = re.sub(r"^\s*:[\w-]+:.*$", " ", text, flags=re.M)
    text = re.sub(r"\{(?:ref|numref|eq|doc|cite:\w+|cite|download|term)\}`[^`]*`", " ", text)
    text = re.sub(r"(`+)[^`]*?\1", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"</?[A-Za-z][^<>\n]*>", " ", text)
    text = re.sub(r"^\([\w-]+\)=\s*$", " ", text, flags=re.M)
    return REFERENCES.sub(" ", text)


def fenced_code(source):
    """The fenced code blocks of a markdown source (their numbers are settings)."""
    return split_fences(source)[1]


def sentence_around(text, start, end):
    """The sentence of text that holds the span start:end, on one line."""
    left = max(text.rfind(". ", 0, start), text.rfind("\n\n", 0, start))
    right = min((i for i in (text.find(". ", end), text.find("\n\n", end)) if i >= 0), default=len(text))
    return " ".join(text[left + 1 : right + 1].split())


def as_number(match, text):
    """The Number for a match of PROSE_NUMBER, or None when it is not result-like."""
    num, exp = match["num"], match["exp"] or match["eexp"]
    decimals = len(num.split(".")[1]) if "." in num else 0
    unit = (match["unit"] or "").strip()
    percent = bool(match["pct"])
    in_math = any(m.start() <= match.start() < m.end() for m in MATH.finditer(text))
    if NOT_RESULTS.search(text[max(0, match.start() - 16) : match.start()]):
        return None
    if in_math and not exp and not re.search(r"\\approx\s*$", text[max(0, match.start() - 12) : match.start()]):
        return None
    if not (decimals or exp or percent or unit or "," in num) or YEAR.fullmatch(num + unit):
        return None
    value = float(num.replace(",", ""))
    zeros = len(num) - len(num.rstrip("0")) if not decimals else 0
    step = 10.0**-decimals if decimals else 10.0**zeros
    if exp:
        power = 10.0 ** int(exp.replace("−", "-").replace(" ", ""))
        value, step = value * power, step * power
    key = num + (f"e{int(exp.replace('−', '-').replace(' ', ''))}" if exp else "") + ("%" if percent else "")
    return Number(key, value, step, percent, unit, sentence_around(text, match.start(), match.end()))


def prose_numbers(prose):
    """The result-like numbers of a piece of prose."""
    found = (as_number(m, prose) for m in PROSE_NUMBER.finditer(prose))
    return [n for n in found if n is not None]


def values_in(text):
    """Every number printed in a text, as floats."""
    text = re.sub(r"(?<=\d)_(?=\d{3})", "", text)
    return {float(m.group(0).replace(",", "")) for m in OUTPUT_NUMBER.finditer(text)}


def candidates(number):
    """The values, with their rounding step, that a printed number may have for this prose number: the number
    itself, and a percentage as a fraction, minutes in seconds, millions written out."""
    factors = {1.0, SCALE_OF_UNIT.get(number.unit, 1.0), 0.01 if number.percent else 1.0}
    return [(number.value * factor, number.step * factor) for factor in factors]


def is_shown(number, values):
    """Whether one of the printed values, rounded to the prose's precision, is the prose's number."""
    for target, step in candidates(number):
        tolerance = step / 2 * (1 + 1e-9) + abs(target) * 1e-12
        if any(abs(v - target) <= tolerance for v in values):
            return True
    return False


def output_text(cell):
    """Everything a code cell printed as text (streams, plain text, Markdown, LaTeX); not HTML, whose embedded
    images and scripts are full of digits."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        for kind in ("text/plain", "text/markdown", "text/latex"):
            data = output.get("data", {}).get(kind, "")
            parts.append("".join(data) if isinstance(data, list) else data)
    return "\n".join(parts)


def notebook_page(path):
    """The prose of a notebook and the values its outputs and code show."""
    cells = nbformat.read(path, as_version=4).cells
    markdown = [c.source for c in cells if c.cell_type == "markdown"]
    shown = [output_text(c) + "\n" + c.source for c in cells if c.cell_type == "code"]
    prose = [markdown_prose(s) for s in markdown]
    return prose, values_in("\n".join(shown + [fenced_code(s) for s in markdown]))


def prose_page(path):
    """The prose of a book page and the values its code blocks and the status page show."""
    source = path.read_text(encoding="utf-8")
    return [markdown_prose(source)], values_in(fenced_code(source) + "\n" + STATUS.read_text(encoding="utf-8"))


def relative(path):
    """A page's path from the repository root, as the declarations and failure messages name it."""
    return path.relative_to(ROOT).as_posix()


PAGES = NOTEBOOKS + PROSE_PAGES


def page(path):
    """The prose and the shown values of a page."""
    return notebook_page(path) if path.suffix == ".ipynb" else prose_page(path)


def declarations():
    """The declared quoted constants: page -> {number as written: its source}."""
    declared = yaml.safe_load(QUOTED.read_text(encoding="utf-8")) or {}
    return {name: {str(k): str(v) for k, v in numbers.items()} for name, numbers in declared.items()}


def unshown_numbers(path):
    """The result-like numbers of a page that no output shows and no declaration quotes."""
    prose, values = page(path)
    quoted = declarations().get(relative(path), {})
    return [n for text in prose for n in prose_numbers(text) if not is_shown(n, values) and n.key not in quoted]


def declaration_problem(name, key, source):
    """Why a declaration does not hold, or None: its number must be in the prose, its arithmetic right and a
    result it quotes from another page shown there."""
    if not (ROOT / name).exists():
        return f"no page {name}"
    numbers = [n for text in page(ROOT / name)[0] for n in prose_numbers(text) if n.key == key]
    if not numbers:
        return "the prose no longer states it; remove the declaration"
    if source.startswith("="):
        value = eval(source[1:], ARITHMETIC)  # noqa: S307 (expressions written in this repository)
        return None if is_shown(numbers[0], {value}) else f"{source[1:].strip()} is {value:.6g}"
    other = source.split()[0]
    if other.endswith((".ipynb", ".md")):
        if not (ROOT / other).exists():
            return f"no page {other}"
        return None if is_shown(numbers[0], page(ROOT / other)[1]) else f"{other} prints no such value"
    return None


@pytest.mark.parametrize("path", PAGES, ids=relative)
def test_every_number_in_the_prose_is_shown_on_its_page(path):
    missing = unshown_numbers(path)
    report = "\n".join(f"  {n.key} in: {n.sentence}" for n in missing)
    assert not missing, (
        f"{relative(path)}: numbers in the prose that no output of the page prints; print them, fix the prose,"
        f" or declare a quoted constant with its source in tests/quoted_numbers.yml:\n{report}"
    )


def test_every_declared_constant_holds():
    problems = [
        f"  {name}: {key} ({source}): {problem}"
        for name, numbers in declarations().items()
        for key, source in numbers.items()
        if (problem := declaration_problem(name, key, source))
    ]
    assert not problems, "tests/quoted_numbers.yml:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.parent.name == "notebooks"], ids=relative)
def test_every_chapter_asserts_its_quality(path):
    """The README and the introduction promise it of every chapter."""
    cells = nbformat.read(path, as_version=4).cells
    assert any("d2l.assert_quality(" in c.source for c in cells if c.cell_type == "code"), "no d2l.assert_quality"


def test_glossary_lists_each_term_once_in_lower_case():
    """A plural or a capital at the start of a sentence does not make a second entry."""
    table = [line for line in (ROOT / "book" / "glossary.md").read_text().splitlines() if line.startswith("|")]
    rows = [line.split("|")[1].strip() for line in table[2:]]
    terms = {t.lower() for t in rows}
    assert not [t for t in terms if t.endswith("s") and t[:-1] in terms], "singular and plural both listed"
    prose = "\n".join(c.source for p in NOTEBOOKS for c in nbformat.read(p, as_version=4).cells)
    capitalised = [t for t in rows if t[0].isupper() and re.search(rf"\b{re.escape(t[0].lower() + t[1:])}\b", prose)]
    assert not capitalised, f"capitalised only at the start of a sentence: {capitalised}"
