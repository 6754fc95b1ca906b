"""The two scales of every notebook: `full` for readers, `quick` for CI (chapter 00)."""

import os
from types import SimpleNamespace

SCALES = ("full", "quick")


def current_scale() -> str:
    """Return the active scale from the D2L_SCALE environment variable, `full` by default (chapter 00)."""
    name = os.environ.get("D2L_SCALE", "full")
    if name not in SCALES:
        raise ValueError(f"D2L_SCALE must be one of {SCALES}, got {name!r}")
    return name


def scale(*, full: dict, quick: dict) -> SimpleNamespace:
    """Pick the settings of the active scale; both scales must name the same settings (chapter 00)."""
    if "scale" in full or "scale" in quick:
        raise ValueError("'scale' names the active scale in the returned settings; call the setting something else")
    if set(full) != set(quick):
        missing = sorted(set(full) ^ set(quick))
        raise ValueError(f"full and quick must name the same settings; only one names {missing}")
    name = current_scale()
    return SimpleNamespace(scale=name, **(full if name == "full" else quick))

