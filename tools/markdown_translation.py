"""Translate MyST Markdown block by block with a gettext catalog, keeping its markup, math and code intact.

The blocks are the ones Sphinx's gettext builder extracts as messages: headings, paragraphs (also in lists,
quotes, tables and directives such as admonitions, exercises and solutions), directive titles and display math.
Each is looked up by its text with runs of white space collapsed, which is how the catalogs store it.
"""

from collections.abc import Callable

from markdown_it.renderer import RendererHTML
from myst_parser.config.main import MdParserConfig
from myst_parser.parsers.mdit import create_md_parser

Lookup = Callable[[str], str | None]
# The MyST extensions of _config.yml (parse.myst_enable_extensions); tests/test_i18n.py checks they agree.
EXTENSIONS = ("amsmath", "colon_fence", "dollarmath", "deflist")
# Directives whose body is Markdown; the bodies of all others (code, math, toctrees) are left alone.
MARKDOWN_DIRECTIVES = {"admonition", "attention", "caution", "danger", "error", "hint", "important", "note",
                       "seealso", "tip", "warning", "exercise", "solution", "dropdown", "topic", "sidebar", "margin"}
MATH_TOKENS = {"math_block", "math_block_label", "amsmath"}
_PARSER = create_md_parser(MdParserConfig(enable_extensions=set(EXTENSIONS)), RendererHTML)


def key(text: str) -> str:
    """Return a message's lookup key: its text with runs of white space collapsed to one space."""
    return " ".join(text.split())


def translate(text: str, lookup: Lookup) -> str:
    """Return Markdown `text` with every block that `lookup` translates replaced by its translation."""
    lines = text.split("\n")
    cursors = [0] * len(lines)  # where the next search on each line starts (several table cells share a line)
    for token in _PARSER.parse(text):
        if token.map is None:
            continue
        if token.type == "inline":
            _replace_inline(lines, cursors, token.map, token.content, lookup)
        elif token.type in MATH_TOKENS:
            _replace_math(lines, token.map, token.content, lookup)
        elif token.type in ("fence", "colon_fence") and token.info.startswith("{"):
            _replace_directive(lines, token, lookup)
    return "\n".join(line for line in lines if line is not None)


def _replace_inline(lines: list, cursors: list[int], span: list[int], content: str, lookup: Lookup) -> None:
    """Put the translation of a heading, paragraph or cell on its first line and drop its other lines."""
    translation = lookup(key(content))
    if translation is None:
        return
    first, start = content.split("\n")[0], span[0]
    at = lines[start].find(first, cursors[start])
    if at < 0:
        raise ValueError(f"cannot locate {first!r} in line {start + 1}: {lines[start]!r}")
    end = at + len(first)
    lines[start] = lines[start][:at] + translation + lines[start][end:]
    cursors[start] = at + len(translation)
    for index in range(start + 1, span[1]):
        lines[index] = None


def _replace_math(lines: list, span: list[int], content: str, lookup: Lookup) -> None:
    """Replace the body of a display-math block by its translation, keeping its delimiters."""
    translation = lookup(key(content))
    if translation is None or key(translation) == key(content):
        return
    block = "\n".join(lines[span[0]:span[1]])
    if content.strip() not in block:
        raise ValueError(f"cannot locate the math block of lines {span[0] + 1}-{span[1]}")
    _set_block(lines, span, block.replace(content.strip(), translation.strip(), 1))


def _replace_directive(lines: list, token, lookup: Lookup) -> None:
    """Translate a directive's title and, for Markdown directives, its body, keeping its options."""
    name, _, argument = token.info[1:].partition("}")
    opening = lines[token.map[0]]
    indent = opening[:len(opening) - len(opening.lstrip())]
    title = lookup(key(argument)) if argument.strip() else None
    if title is not None:
        opening = opening[:opening.rindex(argument.strip())] + title
    body = token.content
    if name.strip() in MARKDOWN_DIRECTIVES:
        options, markdown = _split_options(body)
        body = options + translate(markdown, lookup)
    elif name.strip() == "math":
        options, math = _split_options(body)
        translation = lookup(key(math))
        body = options + (translation.strip() + "\n" if translation is not None else math)
    closed = token.map[1] - token.map[0] >= 2 and lines[token.map[1] - 1].strip() == token.markup
    inner = [indent + line if line else line for line in body.rstrip("\n").split("\n")] if body else []
    block = [opening, *inner] + ([lines[token.map[1] - 1]] if closed else [])
    _set_block(lines, token.map, "\n".join(block))


def _split_options(body: str) -> tuple[str, str]:
    """Split a directive body into its option lines (`:key: value` or a `---` YAML block) and the rest."""
    parts = body.split("\n")
    if parts[0].strip() == "---" and "---" in (p.strip() for p in parts[1:]):
        end = 1 + [p.strip() for p in parts[1:]].index("---") + 1
    else:
        end = next((i for i, p in enumerate(parts) if not p.startswith(":")), len(parts))
    return "".join(p + "\n" for p in parts[:end]), "\n".join(parts[end:])


def _set_block(lines: list, span: list[int], block: str) -> None:
    """Replace the lines of `span` by `block`, keeping the list's length."""
    lines[span[0]] = block
    for index in range(span[0] + 1, span[1]):
        lines[index] = None
