"""Sphinx extension: drop repeated inline scripts from pages.

sphinx-thebe registers its inline configuration after the builder is initialised, so Sphinx 7 emits it
twice and the browser reports "Identifier 'THEBE_JS_URL' has already been declared".
"""


def dedupe_scripts(app, pagename, templatename, context, doctree):
    """Keep the first of any scripts with the same file name and inline body."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        name = script.filename if hasattr(script, "filename") else script
        key = (name or "", getattr(script, "attributes", {}).get("body"))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
