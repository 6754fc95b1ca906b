"""Sphinx extension for the course's two languages, English at the site's root and Chinese under `zh/`.

Every page gets a header button to the same page in the other language, which keeps the section the reader is
at (the part of the address after `#`: both builds give a section the same id). Pages that are generated
rather than translated (the status page) are read from their generated Chinese source in the Chinese build.
"""

from pathlib import Path

CHINESE_PREFIX = "zh/"  # where the Chinese site lies inside the English one
# Open the switch in the same tab, and carry the current section over to the other language.
SWITCH_SCRIPT = """
document.addEventListener("DOMContentLoaded", () => {
  for (const link of document.querySelectorAll("a.btn-language-switch")) {
    link.removeAttribute("target");
    link.addEventListener("click", () => { link.hash = window.location.hash; });
  }
});
"""


def is_chinese(app) -> bool:
    """Tell whether this build is the Chinese one."""
    return (app.config.language or "").startswith("zh")


def other_language_url(pagename: str, chinese: bool) -> str:
    """Return the relative address of the same page in the other language."""
    up = "../" * pagename.count("/")
    return f"{up}../{pagename}.html" if chinese else f"{up}{CHINESE_PREFIX}{pagename}.html"


def add_language_switch(app, pagename, templatename, context, doctree):
    """Append the switch to the header buttons that sphinx-book-theme renders."""
    chinese = is_chinese(app)
    context.setdefault("header_buttons", []).append({
        "type": "link",
        "url": other_language_url(pagename, chinese),
        "text": "English" if chinese else "中文",
        "tooltip": "Read this page in English" if chinese else "阅读本页的中文版",
        "icon": "fas fa-language",
        "label": "language-switch",
    })


def read_generated_page(app, docname, source):
    """Replace the source of a generated page by its version in the build's language."""
    generated = app.config.bilingual_generated_pages.get(docname)
    if generated:
        source[0] = (Path(app.srcdir) / generated).read_text(encoding="utf-8")


def setup(app):
    app.add_config_value("bilingual_generated_pages", {}, "env")
    app.connect("source-read", read_generated_page)
    app.connect("html-page-context", add_language_switch, priority=502)  # after the theme's buttons (501)
    app.add_js_file(None, body=SWITCH_SCRIPT)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
