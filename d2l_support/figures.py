"""Figures: line plots, a live training plot and image grids (chapters 00, 02)."""

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch


def plot(x, *ys, xlabel: str = "", ylabel: str = "", legend: Sequence[str] = (), fmts: Sequence[str] = (),
         xscale: str = "linear", yscale: str = "linear", title: str = "", ax=None, figsize=(4.5, 3)):
    """Plot one or more curves `ys` against the shared `x` and return the axes (chapter 00)."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    for y, fmt in zip(ys, list(fmts) or ["-"] * len(ys)):
        ax.plot(_as_numbers(x), _as_numbers(y), fmt)
    ax.set(xlabel=xlabel, ylabel=ylabel, xscale=xscale, yscale=yscale, title=title)
    if legend:
        ax.legend(legend)
    ax.grid(True, alpha=0.3)
    return ax


def _as_numbers(values):
    """Detach and move tensors to the CPU so that matplotlib can draw them."""
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values


class LivePlot:
    """A figure that redraws after every epoch in Jupyter and leaves one static image in the output (chapter 02)."""

    def __init__(self, *, xlabel: str, legend: Sequence[str], xlim=None, ylim=None, figsize=(4.5, 3)):
        self.fig, self.ax = plt.subplots(figsize=figsize)
        plt.close(self.fig)  # shown through the display handle only, never twice
        self.xlabel, self.legend, self.xlim, self.ylim = xlabel, list(legend), xlim, ylim
        self.xs: list[float] = []
        self.ys: list[list[float]] = [[] for _ in self.legend]
        self.handle = None

    def add(self, x: float, ys: Sequence[float], draw: bool = True) -> None:
        """Append one point to each curve and, unless `draw` is False, redraw."""
        if len(ys) != len(self.legend):
            raise ValueError(f"expected {len(self.legend)} values ({self.legend}), got {len(ys)}")
        self.xs.append(x)
        for curve, y in zip(self.ys, ys):
            curve.append(y)
        if draw:
            self._draw()

    def _draw(self) -> None:
        """Redraw every curve and show the figure."""
        self.ax.cla()
        for curve, fmt in zip(self.ys, ["-", "m--", "g-.", "r:"]):
            self.ax.plot(self.xs, curve, fmt)
        self.ax.set(xlabel=self.xlabel, xlim=self.xlim, ylim=self.ylim)
        self.ax.legend(self.legend)
        self.ax.grid(True, alpha=0.3)
        self._show()

    def _show(self) -> None:
        """Update the figure in place when running under IPython."""
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:
            return
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)


def show_images(images: torch.Tensor, titles: Sequence[str] = (), num_cols: int = 8, scale: float = 1.4):
    """Show a grid of images of shape (N, H, W) or (N, C, H, W) with optional titles; return the figure (chapter 02)."""
    if images.ndim not in (3, 4):
        raise ValueError(f"images must have shape (N, H, W) or (N, C, H, W), got {tuple(images.shape)}")
    if images.ndim == 4:
        images = images.permute(0, 2, 3, 1).squeeze(-1)
    num_rows = -(-len(images) // num_cols)
    fig, axes = plt.subplots(num_rows, num_cols, figsize=(num_cols * scale, num_rows * scale), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(_as_numbers(images[i]), cmap="gray")
            if i < len(titles):
                ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig
