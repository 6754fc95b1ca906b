"""The Chinese edition: refresh the catalogs from the English, check them, write the Chinese notebooks and the
Chinese site's configuration.

    tools/i18n.py update      extract the English messages, merge them into the catalogs, write the notebooks
                              and list every entry that needs a translator (`make catalogs`)
    tools/i18n.py check       fail, listing them, when a catalog or a Chinese notebook lags behind the English
    tools/i18n.py stats       count messages, characters, translated, fuzzy and pending entries
    tools/i18n.py site-config write _build/zh/_config.yml and _toc.yml for the Chinese build
    tools/i18n.py publish     move the Chinese build to _build/html/zh with the Chinese sources to download

Extraction is Sphinx's gettext builder run by Jupyter Book, merging is Babel's (fuzzy matching, the previous
English kept as `#| msgid`), reading for the checks is polib's (line numbers). CONTRIBUTING.md, "Translating".
"""

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import nbformat
import polib
import yaml
from babel.messages.catalog import Catalog
from babel.messages.pofile import normalize, read_po, unescape, write_po

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown_translation import Lookup, key, translate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE = "zh_CN"
LOCALE = ROOT / "locales" / LANGUAGE  # locales/zh_CN/PATH is the Chinese version of PATH
CATALOGS = LOCALE / "LC_MESSAGES"
PENDING = LOCALE / "pending.txt"
OVERLAY = LOCALE / "config.yml"
ZH_BUILD = ROOT / "_build" / "zh"
SITE = ROOT / "_build" / "html"
# Pages generated in both languages by tools/make_pages.py rather than translated: docname -> Chinese source.
GENERATED = {"book/status": "locales/zh_CN/book/status.md"}
REFRESH = "make catalogs"
WIDTH = 100  # the catalogs' line width
FORMAT_FLAGS = {"python-format", "python-brace-format"}
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
# What a translation keeps character for character: roles, math, link targets, then inline code.
MARKUP = (re.compile(r"\{[a-z:-]+\}`[^`]*`"), re.compile(r"\$\$.*?\$\$|\$[^$\n]+?\$", re.S),
          re.compile(r"\]\([^)\s]+\)"), re.compile(r"`[^`\n]+`"))
ROLE_TITLE = re.compile(r"^(\{[a-z:-]+\})`[^`]*<([^<>`]+)>`$")
HEADER = ("# The Chinese translation of one page of the course, one entry per paragraph of its English.\n"
          "# `make catalogs` refreshes it from the English; CONTRIBUTING.md, \"Translating\", says how to translate.")


@dataclass
class Problem:
    """One reason why the Chinese edition lags behind the English."""

    kind: str
    where: str
    english: str = ""
    previous: str = ""
    chinese: str = ""

    def __str__(self) -> str:
        lines = [f"{self.where}: {self.kind}"]
        for label, text in (("previous English", self.previous), ("English", self.english),
                            ("Chinese", self.chinese)):
            if text:
                lines.append(f"    {label + ':':18}{_short(text)}")
        return "\n".join(lines)


def _short(text: str, width: int = 300) -> str:
    """Return `text` on one line, cut to `width` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def extract(source: Path = ROOT) -> Path:
    """Run Sphinx's gettext builder over the book at `source`; return the folder of its .pot files."""
    out = source / "_build" / "i18n"  # its own Sphinx environment, so that the HTML build's stays valid
    shutil.rmtree(out / "_build" / "gettext", ignore_errors=True)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jupyter_book), "build", "--quiet", str(source), "--path-output", str(out), "--builder",
                    "custom", "--custom-builder", "gettext"], check=True, stdout=subprocess.DEVNULL)
    return out / "_build" / "gettext"


def templates(pot_dir: Path) -> dict[str, Path]:
    """Map each page's docname to its .pot file, leaving out the pages generated in both languages."""
    found = {p.relative_to(pot_dir).with_suffix("").as_posix(): p for p in sorted(pot_dir.rglob("*.pot"))}
    return {doc: path for doc, path in found.items() if doc not in GENERATED}


def catalogs(catalog_dir: Path = CATALOGS) -> dict[str, Path]:
    """Map each page's docname to its .po catalog."""
    return {p.relative_to(catalog_dir).with_suffix("").as_posix(): p for p in sorted(catalog_dir.rglob("*.po"))}


def read_template(pot: Path, pot_dir: Path, source: Path) -> Catalog:
    """Read a .pot file, its locations made relative to the book's root (Sphinx writes them from `pot_dir`)."""
    with pot.open("rb") as file:
        template = read_po(file)
    for message in template:
        message.locations = [(_relative(pot_dir, name, source), line) for name, line in message.locations]
    return template


def _relative(base: Path, name: str, source: Path) -> str:
    """Return the path `name`, relative to `base`, as a path relative to `source`."""
    return (base / name).resolve().relative_to(source.resolve()).as_posix()


def merge(template: Catalog, po: Path, drop_obsolete: bool = False) -> bool:
    """Merge a page's current English into its catalog, keeping translations; return whether the file changed."""
    if po.is_file():
        with po.open("rb") as file:
            catalog = read_po(file, locale=LANGUAGE)
        previous = {m.id: m.previous_id for m in catalog if _read_previous(m)}
        catalog.update(template, update_creation_date=False)
        for message in catalog:  # Babel keeps the previous English only of the entries it matches afresh
            if message.fuzzy and not message.previous_id and message.id in previous:
                message.previous_id = previous[message.id]
    else:
        catalog = Catalog(locale=LANGUAGE, project="d2l-checked", version="main", fuzzy=False,
                          header_comment=HEADER, copyright_holder="the d2l-checked authors",
                          creation_date=template.creation_date, revision_date=template.creation_date)
        for message in template:
            if message.id:
                catalog.add(message.id, locations=message.locations)
    for message in catalog:  # prose is no format string: Babel's guess would fail `msgfmt -c` on "90% of"
        message.flags -= FORMAT_FLAGS
    # Babel matches fuzzily only translated entries; untranslated English that is gone leaves nothing to reuse.
    for msgid in [m for m, message in catalog.obsolete.items() if drop_obsolete or not message.string]:
        del catalog.obsolete[msgid]
    return _write_if_changed(po, catalog)


def _read_previous(message) -> bool:
    """Take a fuzzy entry's previous English from its `#|` lines, which Babel reads as translator comments."""
    previous = [c for c in message.user_comments if c.startswith("|")]
    if previous:
        message.user_comments = [c for c in message.user_comments if not c.startswith("|")]
        message.previous_id = ["".join(unescape(q) for q in QUOTED.findall(" ".join(c[1:].strip() for c in previous)))]
    return bool(previous)


def _po_text(catalog: Catalog) -> bytes:
    """A catalog in the gettext format, the previous English of a fuzzy entry written as `#| msgid` lines.

    Babel's own `include_previous` wraps a long previous msgid as one comment, which no reader can parse.
    """
    import io

    buffer = io.BytesIO()
    write_po(buffer, catalog, width=WIDTH)
    text = buffer.getvalue().decode(catalog.charset)
    for message in catalog:
        if message.id and message.previous_id and message.fuzzy:
            entry = f"\nmsgid {normalize(message.id, width=WIDTH)}\nmsgstr "
            previous = f"\n#| msgid {normalize(message.previous_id[0], prefix='#| ', width=WIDTH)}"
            text = text.replace(entry, previous + entry, 1)
    return text.encode(catalog.charset)


def _write_if_changed(po: Path, catalog: Catalog) -> bool:
    """Write a catalog in the gettext format, only when its text changes."""
    text = _po_text(catalog)
    if po.is_file() and po.read_bytes() == text:
        return False
    po.parent.mkdir(parents=True, exist_ok=True)
    po.write_bytes(text)
    return True


def update(source: Path = ROOT, catalog_dir: Path = CATALOGS, drop_obsolete: bool = False) -> list[str]:
    """Refresh every page's catalog from the current English of the book at `source`; return the changed pages."""
    pot_dir = extract(source)
    changed = [doc for doc, pot in templates(pot_dir).items()
               if merge(read_template(pot, pot_dir, source), catalog_dir / f"{doc}.po", drop_obsolete)]
    return changed


def pending_pages(path: Path = PENDING) -> list[str]:
    """Return the pages listed as waiting for their translation (docnames, one a line, # comments)."""
    if not path.is_file():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def location(occurrences: list[tuple[str, object]]) -> str:
    """Return where an entry's English comes from, naming the cell of a notebook."""
    places = []
    for name, line in occurrences:
        line = str(line or "")
        if name.endswith(".ipynb") and line.isdigit():
            cell, row = divmod(int(line), 10_000)  # MyST-NB numbers a cell's lines from (index + 1) * 10000 + 1
            places.append(f"{name} cell {cell - 1}, line {row - 1}")
        else:
            places.append(f"{name}:{line}" if line else name)
    return "; ".join(places)


def catalog_problems(catalog_dir: Path = CATALOGS, pot_dir: Path | None = None, pending_file: Path = PENDING,
                     source: Path = ROOT) -> list[Problem]:
    """List every entry that lags behind the English; with `pot_dir`, also compare with the extracted English."""
    pending, found = pending_pages(pending_file), catalogs(catalog_dir)
    problems = [Problem("listed as pending but there is no such page", pending_file.name + f": {doc}")
                for doc in pending if doc not in found]
    for doc, po in found.items():
        problems += _entry_problems(po.relative_to(source).as_posix() if po.is_relative_to(source) else str(po),
                                    polib.pofile(str(po)), doc in pending)
    if pot_dir is not None:
        problems += _template_problems(found, pot_dir, source)
    return problems


def _entry_problems(name: str, catalog: polib.POFile, pending: bool) -> list[Problem]:
    """List the fuzzy, obsolete, markup-losing and (unless the page is pending) empty entries of one catalog."""
    problems = []
    for entry in catalog:
        where = f"{name}:{entry.linenum} ({location(entry.occurrences)})"
        if entry.obsolete:
            problems.append(Problem("obsolete: its English is gone; reuse its Chinese, then delete it", where,
                                    previous=entry.msgid, chinese=entry.msgstr))
        elif entry.fuzzy:
            problems.append(Problem("fuzzy: its English changed; update the Chinese, then remove `#, fuzzy`",
                                    where, english=entry.msgid, previous=entry.previous_msgid or "",
                                    chinese=entry.msgstr))
        elif not entry.msgstr and not pending:
            problems.append(Problem("untranslated", where, english=entry.msgid))
        elif entry.msgstr and (lost := markup(entry.msgid) - markup(entry.msgstr)):
            problems.append(Problem(f"markup lost: keep {', '.join(sorted(lost))} as in the English", where,
                                    english=entry.msgid, chinese=entry.msgstr))
    if pending and not any(e for e in catalog if not e.obsolete and not e.msgstr):
        problems.append(Problem(f"complete: remove it from {PENDING.name}", name))
    return problems


def markup(text: str) -> Counter:
    """Count the roles, math, link targets and inline code of a message, which its translation must keep."""
    found = Counter()
    for pattern in MARKUP:
        found.update(map(_without_title, pattern.findall(text)))
        text = pattern.sub(" ", text)
    return found


def _without_title(piece: str) -> str:
    """Reduce a role with an explicit title, {doc}`title <target>`, to its role and target: titles get translated."""
    return ROLE_TITLE.sub(r"\1`<\2>`", piece)


def _template_problems(found: dict[str, Path], pot_dir: Path, source: Path) -> list[Problem]:
    """Compare the catalogs' messages with the English just extracted."""
    pots = templates(pot_dir)
    problems = [Problem("no catalog for this page", doc) for doc in pots if doc not in found]
    problems += [Problem("catalog of a page that no longer exists", doc) for doc in found if doc not in pots]
    for doc in set(found) & set(pots):
        english = {m.id: m.locations for m in read_template(pots[doc], pot_dir, source) if m.id}
        catalog = {e.msgid for e in polib.pofile(str(found[doc])) if not e.obsolete}
        problems += [Problem("missing from the catalog", location(english[msgid]),
                             english=msgid) for msgid in sorted(set(english) - catalog)]
        problems += [Problem("no longer in the English", doc, previous=msgid)
                     for msgid in sorted(catalog - set(english))]
    return problems


def translations(po: Path) -> Lookup:
    """Return a lookup of the finished translations of a catalog (fuzzy and empty entries fall back to English)."""
    done = {}
    if po.is_file():
        done = {key(e.msgid): e.msgstr for e in polib.pofile(str(po)) if e.msgstr and not e.fuzzy and not e.obsolete}
    return done.get


def notebook_pages(catalog_dir: Path = CATALOGS, source: Path = ROOT) -> list[str]:
    """Return the docnames of the pages written as notebooks."""
    return [doc for doc in catalogs(catalog_dir) if (source / f"{doc}.ipynb").is_file()]


def chinese_notebook(doc: str, catalog_dir: Path = CATALOGS, source: Path = ROOT) -> str:
    """Return the Chinese notebook of a page as text: its markdown cells translated, everything else the same."""
    notebook = nbformat.read(source / f"{doc}.ipynb", as_version=nbformat.NO_CONVERT)
    lookup = translations(catalog_dir / f"{doc}.po")
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = translate(cell.source, lookup)
    return nbformat.writes(notebook) + "\n"


def write_notebooks(catalog_dir: Path = CATALOGS, source: Path = ROOT, out: Path = LOCALE) -> list[str]:
    """Write every Chinese notebook under `out` (the English path mirrored); return those that changed."""
    changed = []
    for doc in notebook_pages(catalog_dir, source):
        path, text = out / f"{doc}.ipynb", chinese_notebook(doc, catalog_dir, source)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(doc)
    return changed


def notebook_problems(catalog_dir: Path = CATALOGS, source: Path = ROOT, out: Path = LOCALE) -> list[Problem]:
    """List the Chinese notebooks that are missing, out of date, or left over from a removed page."""
    docs = notebook_pages(catalog_dir, source)
    problems = []
    for doc in docs:
        path = out / f"{doc}.ipynb"
        if not path.is_file() or path.read_text(encoding="utf-8") != chinese_notebook(doc, catalog_dir, source):
            problems.append(Problem("Chinese notebook out of date", path.relative_to(source).as_posix()))
    extra = [p for p in out.rglob("*.ipynb") if p.relative_to(out).with_suffix("").as_posix() not in docs]
    return problems + [Problem("Chinese notebook of no page", p.relative_to(source).as_posix()) for p in extra]


def statistics(catalog_dir: Path = CATALOGS, pending_file: Path = PENDING) -> dict[str, int]:
    """Count the catalogs' messages, their English characters, and how many are translated, fuzzy or empty."""
    entries = {doc: [e for e in polib.pofile(str(po)) if not e.obsolete] for doc, po in catalogs(catalog_dir).items()}
    every = [e for page in entries.values() for e in page]
    pending = [doc for doc in pending_pages(pending_file) if doc in entries]
    return {"pages": len(entries), "messages": len(every), "characters": sum(len(e.msgid) for e in every),
            "translated": sum(bool(e.msgstr) and not e.fuzzy for e in every),
            "fuzzy": sum(e.fuzzy for e in every), "empty": sum(not e.msgstr for e in every),
            "pending pages": len(pending),
            "pending messages": sum(not e.msgstr for doc in pending for e in entries[doc])}


def deep_merge(base: dict, overlay: dict) -> dict:
    """Return `base` with the keys of `overlay` set, merging nested mappings."""
    merged = dict(base)
    for name, value in overlay.items():
        merged[name] = deep_merge(base[name], value) if isinstance(value, dict) and isinstance(
            base.get(name), dict) else value
    return merged


def site_config(out: Path = ZH_BUILD) -> None:
    """Write the Chinese build's _config.yml and _toc.yml: the English ones, translated from the catalogs."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    root = translations(CATALOGS / f"{toc['root']}.po")  # the toc's captions are messages of the root page
    config = deep_merge(config, yaml.safe_load(OVERLAY.read_text(encoding="utf-8")))
    config["title"] = root(key(config["title"])) or config["title"]
    extensions = config["sphinx"]["local_extensions"]
    config["sphinx"]["local_extensions"] = {name: str(ROOT / path) for name, path in extensions.items()}
    config["sphinx"]["config"]["bilingual_generated_pages"] = GENERATED
    for part in toc["parts"]:
        part["caption"] = root(key(part["caption"])) or part["caption"]
    out.mkdir(parents=True, exist_ok=True)
    header = "# Generated by tools/i18n.py site-config from the English files and the catalogs: do not edit.\n"
    for name, data in (("_config.yml", config), ("_toc.yml", toc)):
        (out / name).write_text(header + yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def publish(site: Path = SITE, built: Path = ZH_BUILD / "_build" / "html") -> None:
    """Move the Chinese build under the English site, with the Chinese sources behind its download buttons."""
    target = site / "zh"
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(str(built), str(target))
    for source in (target / "_sources").rglob("*"):
        doc = source.relative_to(target / "_sources").with_suffix("").as_posix()
        if doc in GENERATED:
            shutil.copyfile(ROOT / GENERATED[doc], source)
        elif source.suffix == ".ipynb" and (LOCALE / f"{doc}.ipynb").is_file():
            shutil.copyfile(LOCALE / f"{doc}.ipynb", source)
        elif source.suffix == ".md" and (ROOT / f"{doc}.md").is_file():
            text = (ROOT / f"{doc}.md").read_text(encoding="utf-8")
            source.write_text(translate(text, translations(CATALOGS / f"{doc}.po")), encoding="utf-8")


def report(problems: list[Problem]) -> str:
    """Render the problems for a translator, ending with what to do."""
    if not problems:
        return "The catalogs and the Chinese notebooks match the English."
    return "\n".join(map(str, problems)) + (
        f"\n\n{len(problems)} entries lag behind the English. Refresh the catalogs with `{REFRESH}`, "
        "translate the entries listed, then run `make test` (CONTRIBUTING.md, \"Translating\").")


def main() -> int:
    """Run one of the commands of the module's docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["update", "check", "stats", "site-config", "publish"])
    parser.add_argument("--drop-obsolete", action="store_true", help="update: delete obsolete translations")
    args = parser.parse_args()
    if args.command == "update":
        changed = update(drop_obsolete=args.drop_obsolete)
        print(f"catalogs refreshed: {len(changed)} changed; Chinese notebooks rewritten: {len(write_notebooks())}")
        print(report(catalog_problems()))
    elif args.command == "check":
        problems = catalog_problems(pot_dir=extract()) + notebook_problems()
        print(report(problems))
        return 1 if problems else 0
    elif args.command == "stats":
        print("\n".join(f"{name:17}{value:>9,}" for name, value in statistics().items()))
    elif args.command == "site-config":
        site_config()
    else:
        publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
