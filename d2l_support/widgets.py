"""Explorers: a slider player that works on the static website, and its live ipywidgets twin (chapter 00)."""

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
from matplotlib.animation import FuncAnimation


def frames_player(draw: Callable, name: str, values: Sequence, *, figsize=(5, 3.2), dpi: int = 72,
                  interval: int = 600, **fixed) -> "IPython.display.HTML":  # noqa: F821
    """Precompute `draw(ax, name=value, **fixed)` for each value and return an HTML slider player (chapter 00).

    The player is plain HTML and JavaScript, so readers of the website can drag it without a kernel.
    """
    from IPython.display import HTML

    if len(values) == 0:
        raise ValueError(f"values for {name!r} must not be empty")
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)

    def update(i):
        ax.cla()
        draw(ax, **{name: values[i]}, **fixed)

    animation = FuncAnimation(fig, update, frames=len(values), interval=interval)
    html = animation.to_jshtml(default_mode="once")
    plt.close(fig)
    return HTML(html)


def live_explorer(draw: Callable, figsize=(5, 3.2), **controls):
    """Return an ipywidgets explorer calling `draw(ax, **values)` whenever a control moves (chapter 00).

    `controls` are what `ipywidgets.interactive` accepts: (min, max, step) tuples, lists, or widgets.
    """
    import ipywidgets

    def show(**values):
        fig, ax = plt.subplots(figsize=figsize)
        draw(ax, **values)
        plt.show()

    return ipywidgets.interactive(show, **controls)
