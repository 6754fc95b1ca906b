"""Generate book/status.md (and its Chinese twin, locales/zh_CN/book/status.md) and book/glossary.md from the
committed notebooks."""

import ast
import json
import re
from pathlib import Path

import i18n
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
QUICK_TIMINGS = ROOT / "book" / "quick_timings.json"
RUN_KEYS = ("scale", "device", "torch", "python", "wall time", "peak memory", "date")
# A key term on first use: **English term** (中文), the Chinese in ASCII or full-width parentheses.
TERM = re.compile(r"\*\*([^*\n]+?)\*\*\s*[(（]([^()（）\n]*[\u4e00-\u9fff][^()（）\n]*)[)）]")


def title(notebook) -> str:
    """Return the text of a notebook's first H1 heading."""
    for cell in notebook.cells:
        match = cell.cell_type == "markdown" and re.search(r"^# (.+)$", cell.source, re.M)
        if match:
            return match.group(1).strip()
    return "(untitled)"


def provenance(notebook) -> dict[str, str]:
    """Return the key/value pairs of the notebook's printed provenance block, or {} if it has none."""
    for cell in reversed(notebook.cells):
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            if output.get("output_type") == "stream" and "Provenance\n" in text:
                block = text.split("Provenance\n", 1)[1]
                pairs = (re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in block.splitlines())
                return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}
    return {}


def quality_targets(notebook) -> list[str]:
    """Return the full-scale targets of a notebook's `assert_quality` calls, e.g. 'test accuracy >= 0.88'."""
    targets = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(re.sub(r"(?m)^(\s*)[%!].*$", r"\1pass", cell.source))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "assert_quality":
                options = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
                relation = "<=" if options.get("lower_is_better") else ">="
                targets.append(f"{options.get('name', 'test accuracy')} {relation} {options['full']}")
    return list(dict.fromkeys(targets))


def full_scale_minutes(notebooks: dict[Path, object]) -> tuple[float, int]:
    """Return the summed wall time in minutes of the notebooks committed at full scale, and how many they are."""
    runs = [provenance(notebook) for notebook in notebooks.values()]
    seconds = [float(run["wall time"].removesuffix(" s")) for run in runs if run.get("scale") == "full"]
    return sum(seconds) / 60, len(seconds)


def status_table(notebooks: dict[Path, object], header: tuple[str, ...], name=title) -> list[str]:
    """Render the provenance of every notebook as the rows of a Markdown table, each chapter named by `name`."""
    columns = ("scale", "device", "torch", "wall time", "peak memory")
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for path, notebook in notebooks.items():
        run = provenance(notebook)
        metrics = ", ".join(f"{k} {v}" for k, v in run.items() if k not in RUN_KEYS) or "—"
        targets = ", ".join(quality_targets(notebook)) or "—"
        link = f"[{name(notebook, path)}](../notebooks/{path.name})"
        cells = [run.get(key, "—") for key in columns]
        rows.append(f"| {link} | {' | '.join(cells)} | {metrics} | {targets} | {run.get('date', '—')} |")
    return rows


def status_page(notebooks: dict[Path, object]) -> str:
    """Render the execution statistics of every notebook as a Markdown table."""
    header = ("chapter", "scale", "device", "torch", "wall time", "peak memory", "headline metrics",
              "full-scale targets", "date")
    rows = status_table(notebooks, header, lambda notebook, path: title(notebook))
    minutes, count = full_scale_minutes(notebooks)
    return (
        "# Status\n\n"
        "Where and how each chapter's committed outputs were produced, read from the provenance line that ends\n"
        "every notebook, next to the targets its final assertions check at full scale. This page is generated\n"
        "by `tools/make_pages.py`; `make execute` refreshes it. Chapters run at `full` scale show the results the\n"
        "chapter promises; `quick` means a run at the scale CI uses, waiting for its full run. Peak memory is the\n"
        "most RAM the notebook's kernel held and, on a GPU, the most memory its tensors took there.\n\n"
        + "\n".join(rows) + "\n\n"
        f"The {count} chapters committed at full scale took **{minutes:.0f} minutes** in all, each on the device its\n"
        "row names.\n"
        + quick_cost_section()
    )


def chinese_title(notebook, path: Path) -> str:
    """Return a chapter's title as its catalog translates it, or in English while it is untranslated."""
    english = title(notebook)
    return i18n.translations(i18n.CATALOGS / "notebooks" / path.with_suffix(".po").name)(i18n.key(english)) or english


def status_page_zh(notebooks: dict[Path, object]) -> str:
    """Render the status page in Chinese from the same data (generated, not translated: its numbers change)."""
    header = ("章节", "规模", "设备", "torch", "运行时间", "峰值内存", "主要指标", "完整规模的目标", "日期")
    rows = status_table(notebooks, header, chinese_title)
    minutes, count = full_scale_minutes(notebooks)
    return (
        "# 运行状态\n\n"
        "每章提交的输出在何处、以何种方式得到：数据读自每个笔记本末尾打印的来源信息，\n"
        "旁边列出其最后的断言在完整规模下检查的目标。本页由 `tools/make_pages.py` 生成，\n"
        "`make execute` 会刷新它。以 `full` 规模运行的章节给出章节所承诺的结果；`quick`\n"
        "表示以 CI 所用的规模运行，尚待完整规模的运行。峰值内存是笔记本内核占用内存的最大值，\n"
        "在 GPU 上还包括其张量在显存中占用的最大值。\n\n"
        + "\n".join(rows) + "\n\n"
        f"以完整规模提交的 {count} 章共用时 **{minutes:.0f} 分钟**，各自运行在其所在行列出的设备上。\n"
        + quick_cost_section_zh()
    )


def quick_cost_section() -> str:
    """Render the measured quick-scale time and peak memory of every notebook, if `make time-quick` has run."""
    if not QUICK_TIMINGS.is_file():
        return ""
    timings = json.loads(QUICK_TIMINGS.read_text(encoding="utf-8"))
    peaks = timings["peak memory"]
    rows = ["| notebook | seconds | peak memory |", "|---|---|---|"]
    rows += [f"| `{name}` | {seconds:.0f} | {peaks[name]} |" for name, seconds in timings["seconds"].items()]
    total = sum(timings["seconds"].values())
    return (
        "\n## The whole course at quick scale\n\n"
        f"Every notebook executed at `{timings['scale']}` scale by `make time-quick` on {timings['machine']}: "
        f"**{total / 60:.1f} minutes** in all.\n\n" + "\n".join(rows) + "\n"
    )


def quick_cost_section_zh() -> str:
    """Render the quick-scale timings in Chinese, if `make time-quick` has run."""
    if not QUICK_TIMINGS.is_file():
        return ""
    timings = json.loads(QUICK_TIMINGS.read_text(encoding="utf-8"))
    peaks = timings["peak memory"]
    rows = ["| 笔记本 | 秒 | 峰值内存 |", "|---|---|---|"]
    rows += [f"| `{name}` | {seconds:.0f} | {peaks[name]} |" for name, seconds in timings["seconds"].items()]
    total = sum(timings["seconds"].values())
    return (
        "\n## 以 quick 规模运行整门课程\n\n"
        f"`make time-quick` 在 {timings['machine']} 上以 `{timings['scale']}` 规模执行了每个笔记本，"
        f"共用时 **{total / 60:.1f} 分钟**。\n\n" + "\n".join(rows) + "\n"
    )


def glossary_terms(notebooks: dict[Path, object]) -> dict[str, tuple[str, str, Path, str]]:
    """Map each key term (lower case, singular) to its English and Chinese forms and the chapter that introduces it."""
    found = []
    for path, notebook in notebooks.items():
        prose = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
        found += [(english.strip(), chinese.strip(), path, title(notebook)) for english, chinese in TERM.findall(prose)]
    text = "\n".join(cell.source for notebook in notebooks.values() for cell in notebook.cells)
    keys = {english.lower() for english, *_ in found}
    terms = {}
    for english, chinese, path, chapter in found:
        english = sentence_case(english, text)
        key = english.lower()
        key = key[:-1] if key.endswith("s") and key[:-1] in keys else key
        terms.setdefault(key, (english if key == english.lower() else english[:-1], chinese, path, chapter))
    return terms


def sentence_case(term: str, text: str) -> str:
    """A term capitalised only because it starts a sentence, in lower case; names such as "He initialization" kept."""
    lowered = term[0].lower() + term[1:]
    return lowered if lowered != term and re.search(rf"\b{re.escape(lowered)}\b", text) else term


def glossary_page(notebooks: dict[Path, object]) -> str:
    """Render the bilingual glossary as a Markdown table sorted by English term."""
    rows = ["| English | 中文 | first used in |", "|---|---|---|"]
    for _, (english, chinese, path, chapter) in sorted(glossary_terms(notebooks).items()):
        rows.append(f"| {english} | {chinese} | [{chapter}](../notebooks/{path.name}) |")
    return (
        "# Glossary 术语表\n\n"
        "Every key term of the course in English and Chinese, with the chapter that introduces it.\n"
        "Generated by `tools/make_pages.py` from the chapters, where a key term's first use reads\n"
        "**term** (术语).\n\n" + "\n".join(rows) + "\n"
    )


def main() -> None:
    """Write both generated pages."""
    notebooks = {path: nbformat.read(path, as_version=4) for path in NOTEBOOKS}
    (ROOT / "book" / "status.md").write_text(status_page(notebooks), encoding="utf-8")
    (i18n.LOCALE / "book" / "status.md").write_text(status_page_zh(notebooks), encoding="utf-8")
    (ROOT / "book" / "glossary.md").write_text(glossary_page(notebooks), encoding="utf-8")


if __name__ == "__main__":
    main()
