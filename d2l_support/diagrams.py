"""Architecture diagrams drawn from the model object itself, so that a figure cannot drift from the code."""

import io
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path
from matplotlib.textpath import TextPath
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

_FUNCTIONS = {"add": "add", "iadd": "add", "cat": "concat", "relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh"}
_COLORS = {"input": "white", "merge": "#fff2cc", "block": "#d0e0e3", "Conv": "#cfe2f3", "Pool": "#d9ead3",
           "Linear": "#fce5cd", "Norm": "#e4d7f5", "state": "#cfe2f3", "output": "#fce5cd"}
_RNN_WEIGHTS = {"input": ("W_xh", "W_hx", "weight_ih_l0"), "recurrent": ("W_hh", "weight_hh_l0"),
                "output": ("W_hq", "W_qh")}
_FONT, _SMALL = 8, 7  # points: labels, shapes
_LINE = 0.14  # inches per line of text
_GAP = (0.3, 0.22)  # inches between the boxes of draw_model, across and down
_MAX_WIDTH = 7.5  # inches; wider diagrams break their labels into two lines
_GROUP_GAP = 0.15  # lanes of extra space between column groups


class DiagramError(ValueError):
    """A model that draw_model cannot trace or run on the dummy input (chapter 03)."""


@dataclass
class Node:
    """One box: its name, label and output shape without the batch axis, and its lane, row and column group."""

    name: str
    label: str
    shape: tuple[int, ...] | None = None
    kind: str = "layer"
    x: float = 0.0
    row: int = 0
    group: int = 0


@dataclass
class Edge:
    """One arrow from the box `src` to the box `dst`, with an optional label; `highlight` draws it in red."""

    src: str
    dst: str
    label: str = ""
    highlight: bool = False


@dataclass(repr=False)
class Diagram:
    """The boxes and arrows of a drawn architecture and the matplotlib figure; shows itself in Jupyter."""

    nodes: list[Node]
    edges: list[Edge]
    figure: Figure

    def __repr__(self) -> str:
        return f"Diagram({len(self.nodes)} boxes, {len(self.edges)} arrows)"

    def _repr_png_(self):
        """The figure as a PNG at twice the screen resolution, displayed at its size in inches."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=200)
        return buffer.getvalue(), {"width": round(self.figure.get_figwidth() * 100)}


def draw_model(model: nn.Module, x: torch.Tensor, *, collapse: tuple[type, ...] = (), depth: int | None = None,
               max_rows: int = 10) -> Diagram:
    """Draw `model` as boxes and arrows, with each layer's settings and its output shape for the dummy input batch
    `x`, e.g. torch.zeros(1, 1, 28, 28) (chapter 03).

    Every torch.nn layer is one box; other modules are traced through unless their type is in `collapse` or they are
    nested `depth` levels deep (depth=1: each child of `model` is one box). Long chains wrap into columns of at most
    `max_rows` boxes.
    """
    graph = _trace(model, tuple(collapse), depth)
    _propagate_shapes(graph, model, x)
    nodes, edges = _boxes_and_arrows(graph)
    _layout(nodes, edges, max_rows)
    return Diagram(nodes, edges, _render(nodes, edges, _fit_width(nodes), _GAP))


def draw_rnn(model: nn.Module | Mapping[str, torch.Tensor], steps: int = 3) -> Diagram:
    """Draw a one-layer RNN unrolled over `steps` time steps, its shared weights' shapes read from `model` (chapter 18).

    `model` is a module with parameters W_xh, W_hh, W_hq (or W_hx, W_qh), a module holding an nn.RNN and an
    nn.Linear output layer, or a dict that maps those names to tensors.
    """
    nodes, edges, caption = _unrolled(model, steps)
    return Diagram(nodes, edges, _render(nodes, edges, box=(0.75, 0.42), gap=(0.6, 0.5), caption=caption))


def draw_bptt(model: nn.Module | Mapping[str, torch.Tensor], steps: int = 3, wrt: str = "W_hh") -> Diagram:
    """Draw the computational graph of an unrolled RNN and its loss, highlighting the paths that dL/d`wrt` sums over
    (chapter 19)."""
    nodes, edges, caption = _unrolled(model, steps)
    weights = {edge.label for edge in edges}
    if wrt not in weights:
        raise ValueError(f"wrt must name one of the weights {sorted(weights)}, got {wrt!r}")
    for node in nodes:
        node.row += 1
    nodes.append(Node("L", "$L$", kind="merge", x=(1 + steps) / 2))
    edges += [Edge(f"o{t}", "L") for t in range(1, steps + 1)]
    _highlight_paths(edges, wrt)
    caption.append(f"red: the paths that $\\partial L / \\partial {_math(wrt)[1:-1]}$ sums over")
    return Diagram(nodes, edges, _render(nodes, edges, box=(0.75, 0.42), gap=(0.6, 0.5), caption=caption))


class _Tracer(fx.Tracer):
    """A tracer that keeps torch.nn layers, the types in `collapse` and modules `depth` levels down as single boxes."""

    def __init__(self, collapse: tuple[type, ...], depth: int | None):
        super().__init__()
        self.collapse, self.depth = collapse, depth

    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        deep = self.depth is not None and name.count(".") + 1 >= self.depth
        return isinstance(module, self.collapse) or deep or super().is_leaf_module(module, name)

    def call_module(self, module, forward, args, kwargs):
        try:
            return super().call_module(module, forward, args, kwargs)
        except DiagramError:
            raise
        except Exception as error:
            kind = type(module).__name__
            raise DiagramError(f"cannot trace {kind} '{self.path_of_module(module)}': {_first_line(error)}; "
                               f"draw it as one box with collapse=({kind},)") from None


def _trace(model: nn.Module, collapse: tuple[type, ...], depth: int | None) -> fx.GraphModule:
    """Trace `model` symbolically into a graph of layer calls."""
    tracer = _Tracer(collapse, depth)
    try:
        graph = tracer.trace(model)
    except DiagramError:
        raise
    except Exception as error:
        raise DiagramError(f"cannot trace {type(model).__name__}: {_first_line(error)}; draw its parts "
                           "separately or rewrite forward() without control flow on tensor values") from None
    return fx.GraphModule(tracer.root, graph)


def _propagate_shapes(graph: fx.GraphModule, model: nn.Module, x: torch.Tensor) -> None:
    """Run `x` through the graph in evaluation mode to record every output shape, leaving the model and RNG as found."""
    modes = {module: module.training for module in model.modules()}
    device = next(iter(model.parameters()), x).device
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            model.eval()
            ShapeProp(graph).propagate(x.to(device))
    except RuntimeError as error:
        raise DiagramError(f"the input of shape {tuple(x.shape)} does not fit {type(model).__name__}: "
                           f"{_first_line(error.__cause__ or error)}") from None
    finally:
        for module, training in modes.items():
            module.training = training


def _first_line(error: BaseException) -> str:
    """The first line of an error message."""
    return (str(error).strip() or type(error).__name__).splitlines()[0]


def _boxes_and_arrows(graph: fx.GraphModule) -> tuple[list[Node], list[Edge]]:
    """One box per graph node that outputs a tensor, one arrow per tensor that flows between two boxes."""
    nodes, edges = [], []
    for node in graph.graph.nodes:
        meta = node.meta.get("tensor_meta")
        if node.op == "output" or not isinstance(meta, TensorMetadata):
            continue
        label, kind = _label(node, graph)
        nodes.append(Node(node.name, label, tuple(meta.shape[1:]), kind))
        drawn = {box.name for box in nodes}
        edges += [Edge(source.name, node.name) for source in node.all_input_nodes if source.name in drawn]
    return nodes, edges


def _label(node: fx.Node, graph: fx.GraphModule) -> tuple[str, str]:
    """The text and kind of the box for one graph node."""
    if node.op == "placeholder":
        return "input", "input"
    if node.op == "call_module":
        module = graph.get_submodule(node.target)
        if module.__module__.startswith("torch.nn") and not list(module.children()):
            return _describe(module), "layer"
        return f"{node.target}: {type(module).__name__}\n{_summary(module)}", "block"
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    label = _FUNCTIONS.get(name, name)
    return label, "merge" if label in ("add", "concat") else "layer"


def _describe(layer: nn.Module) -> str:
    """A layer's type and settings read from its attributes, e.g. 'Conv2d 5×5, 1→6, pad 2'."""
    text = type(layer).__name__
    if hasattr(layer, "kernel_size"):
        kernel = layer.kernel_size if isinstance(layer.kernel_size, tuple) else (layer.kernel_size,) * 2
        text += " " + "×".join(map(str, kernel))
    details = []
    if hasattr(layer, "in_channels"):
        details.append(f"{layer.in_channels}→{layer.out_channels}")
    if hasattr(layer, "in_features"):
        details.append(f"{layer.in_features}→{layer.out_features}")
    stride, padding = _values(getattr(layer, "stride", 1)), _values(getattr(layer, "padding", 0))
    if any(v != 1 for v in stride):
        details.append(f"stride {_compact(stride)}")
    if any(v != 0 for v in padding):
        details.append(f"pad {_compact(padding)}")
    if hasattr(layer, "num_features"):
        details.append(f"{layer.num_features} {'features' if isinstance(layer, nn.BatchNorm1d) else 'channels'}")
    if isinstance(layer, nn.modules.dropout._DropoutNd):
        details.append(f"p={layer.p}")
    return ", ".join([text, *details])


def _values(setting) -> tuple:
    """A stride or padding as a tuple: (2,) for 2, (2, 1) for (2, 1)."""
    return setting if isinstance(setting, tuple) else (setting,)


def _compact(values: tuple) -> str:
    """'2' for (2, 2), '2×1' for (2, 1)."""
    return str(values[0]) if len(set(values)) == 1 else "×".join(map(str, values))


def _summary(module: nn.Module) -> str:
    """The layers inside a module drawn as one box, counted by type, e.g. '2 Conv2d, 2 ReLU, MaxPool2d'."""
    counts = Counter(type(m).__name__ for m in module.modules() if not list(m.children()) and m is not module)
    return ", ".join(name if count == 1 else f"{count} {name}" for name, count in counts.items()) or "no layers"


def _layout(nodes: list[Node], edges: list[Edge], max_rows: int) -> None:
    """Place the boxes: row = longest path from the input, parallel branches in side-by-side lanes, long chains
    wrapped into column groups of at most `max_rows` rows."""
    by_name = {node.name: node for node in nodes}
    preds = {node.name: [e.src for e in edges if e.dst == node.name] for node in nodes}
    succs = {node.name: [e.dst for e in edges if e.src == node.name] for node in nodes}
    lanes = _lanes(nodes, preds, succs)
    for node in nodes:
        node.row = 1 + max((by_name[p].row for p in preds[node.name]), default=-1)
        node.x = _centre(node.name, lanes, preds, succs, by_name)
    starts = _group_starts(nodes, edges, by_name, max_rows)
    width = max(lanes.values()) + 1
    for node in nodes:
        node.group = sum(start <= node.row for start in starts) - 1
        node.row -= starts[node.group]
        node.x += node.group * (width + _GROUP_GAP)


def _group_starts(nodes: list[Node], edges: list[Edge], by_name: dict, max_rows: int) -> list[int]:
    """The first row of each column group: groups of about equal length, cut only where a single arrow crosses."""
    rows = 1 + max(node.row for node in nodes)
    per_group = math.ceil(rows / math.ceil(rows / max_rows))
    crossing = Counter(b for e in edges for b in range(by_name[e.src].row + 1, by_name[e.dst].row + 1))
    cuts = [b for b in range(1, rows) if crossing[b] == 1]
    starts = [0]
    while rows - starts[-1] > max_rows:
        options = [c for c in cuts if starts[-1] < c <= starts[-1] + max_rows] or [c for c in cuts if c > starts[-1]]
        if not options:
            break
        starts.append(min(options, key=lambda c: abs(c - starts[-1] - per_group)))
    return starts


def _lanes(nodes: list[Node], preds: dict, succs: dict) -> dict[str, int]:
    """A lane per box: a box continues the lane of its first predecessor not yet continued, else takes a free lane."""
    lanes, continued, done = {}, set(), set()
    for node in nodes:
        heir = next((p for p in preds[node.name] if p not in continued), None)
        if heir is None:
            busy = {lanes[n] for n in done if any(s not in done for s in succs[n])}
            lanes[node.name] = min(set(range(len(nodes))) - busy)
        else:
            lanes[node.name] = lanes[heir]
            continued.add(heir)
        done.add(node.name)
    return lanes


def _centre(name: str, lanes: dict, preds: dict, succs: dict, by_name: dict) -> float:
    """A fork or merge box sits centred over its branches; a box that only continues a chain sits under its source."""
    for neighbours in (succs[name], preds[name]):
        spread = {lanes[n] for n in neighbours}
        if len(spread) > 1:
            return (min(spread) + max(spread)) / 2
    source = preds[name][0] if len(preds[name]) == 1 else None
    if source and succs[source] == [name] and lanes[source] == lanes[name]:
        return by_name[source].x
    return float(lanes[name])


def _unrolled(model, steps: int) -> tuple[list[Node], list[Edge], list[str]]:
    """The boxes x_t, h_t, o_t and the weighted arrows of an RNN unrolled over `steps`, and the weights' shapes."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    weights = _rnn_weights(model)
    (w_x, _, x_shape), (w_h, _, h_shape), (w_q, _, q_shape) = (weights[r] for r in ("input", "recurrent", "output"))
    hidden = h_shape[0]
    sizes = {"x": math.prod(x_shape) // hidden, "h": hidden, "o": math.prod(q_shape) // hidden}
    nodes = [Node("h0", "$\\mathbf{h}_{0}$", (hidden,), "input", x=0, row=1)]
    edges = []
    for t in range(1, steps + 1):
        nodes += [Node(f"{v}{t}", f"$\\mathbf{{{v}}}_{{{t}}}$", (sizes[v],), kind, x=t, row=row)
                  for v, kind, row in (("x", "input", 2), ("h", "state", 1), ("o", "output", 0))]
        edges += [Edge(f"x{t}", f"h{t}", w_x), Edge(f"h{t - 1}", f"h{t}", w_h), Edge(f"h{t}", f"o{t}", w_q)]
    caption = ["weights shared by all time steps:"]
    caption += [_math(symbol) + (f" = {source}" if source != symbol else "") + f": {_shape(shape)}"
                for symbol, source, shape in weights.values()]
    return nodes, edges, caption


def _rnn_weights(model) -> dict[str, tuple[str, str, tuple[int, ...]]]:
    """The input, recurrent and output weights of a one-layer RNN as {role: (symbol, parameter name, shape)}."""
    named = dict(model) if isinstance(model, Mapping) else dict(model.named_parameters())
    linear = set() if isinstance(model, Mapping) else {
        f"{name}.weight" for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    if any("_l1" in name or "_reverse" in name for name in named):
        raise ValueError("draw_rnn draws one-layer, one-directional RNNs; got parameters " + ", ".join(named))
    weights = {}
    for role, aliases in _RNN_WEIGHTS.items():
        found = [n for n in named if n.rsplit(".", 1)[-1] in aliases or (role == "output" and n in linear)]
        if len(found) != 1:
            expected = " or ".join(aliases) + (" or an nn.Linear layer" if role == "output" else "")
            raise ValueError(f"expected one {role} weight ({expected}), found {found or 'none'} among {list(named)}")
        short = found[0].rsplit(".", 1)[-1]
        weights[role] = (short if short.startswith("W_") else aliases[0], found[0], tuple(named[found[0]].shape))
    hidden = weights["recurrent"][2]
    if len(hidden) != 2 or hidden[0] != hidden[1] or any(hidden[0] not in w[2] for w in weights.values()):
        raise ValueError(f"the recurrent weight must be square and share its size with the others, got "
                         f"{ {w[1]: w[2] for w in weights.values()} }")
    return weights


def _highlight_paths(edges: list[Edge], wrt: str) -> None:
    """Highlight the arrows that carry `wrt` and every arrow downstream of them, all of which lead to the loss."""
    reached = {e.dst for e in edges if e.label == wrt}
    frontier = list(reached)
    while frontier:
        source = frontier.pop()
        step = [e.dst for e in edges if e.src == source and e.dst not in reached]
        reached.update(step)
        frontier += step
    for edge in edges:
        edge.highlight = edge.label == wrt or edge.src in reached


def _shape(shape: tuple[int, ...] | None) -> str:
    """'6×28×28' for an output shape without the batch axis."""
    return "" if shape is None else "×".join(map(str, shape)) or "scalar"


def _math(symbol: str) -> str:
    """'W_hh' typeset as W with the subscript hh."""
    name, _, subscript = symbol.partition("_")
    return f"${name}_{{{subscript}}}$"


def _fit_width(nodes: list[Node]) -> tuple[float, float]:
    """The size of the boxes, after breaking the layers' labels into two lines if the diagram would be too wide."""
    box = _box_size(nodes)
    if (box[0] + _GAP[0]) * (1 + max(node.x for node in nodes)) > _MAX_WIDTH:
        for node in nodes:
            node.label = node.label.replace(", ", "\n", 1) if node.kind == "layer" else node.label
        box = _box_size(nodes)
    return box


def _box_size(nodes: list[Node]) -> tuple[float, float]:
    """The width and height in inches of a box that fits the text of every box."""
    lines = max(node.label.count("\n") for node in nodes) + 2
    return max(_text_width(node) for node in nodes) + 0.2, _LINE * lines + 0.12


def _text_width(node: Node) -> float:
    """The width in inches of a box's widest line of text."""
    lines = [(line, _FONT) for line in node.label.splitlines()] + [(_shape(node.shape), _SMALL)]
    return max(TextPath((0, 0), text, size=size).get_extents().width / 72 for text, size in lines)


def _render(nodes: list[Node], edges: list[Edge], box: tuple[float, float], gap: tuple[float, float],
            caption: list[str] = ()) -> Figure:
    """Draw the placed boxes and arrows on a figure measured in inches, with optional caption lines underneath."""
    lane, row_height = box[0] + gap[0], box[1] + gap[1]
    margin = (0.08, 0.08 + gap[1] / 2)
    bottom = 2 * margin[1] + box[1] + row_height * max(node.row for node in nodes)
    captions = bottom - margin[1] + 0.05
    size = (2 * margin[0] + box[0] + gap[0] / 2 + lane * max(node.x for node in nodes),
            max(bottom, captions + 1.2 * _LINE * len(caption) + 0.05))
    figure = Figure(figsize=size)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set(xlim=(0, size[0]), ylim=(size[1], 0))
    ax.axis("off")
    centres = {node.name: (margin[0] + box[0] / 2 + lane * node.x, margin[1] + box[1] / 2 + row_height * node.row)
               for node in nodes}
    for node in nodes:
        _draw_box(ax, node, centres[node.name], box)
    by_name = {node.name: node for node in nodes}
    for edge in edges:
        _draw_arrow(ax, edge, by_name, centres, box, gap)
    for i, line in enumerate(caption):
        ax.text(margin[0], captions + 1.2 * _LINE * (i + 0.5), line, fontsize=_SMALL, va="center")
    return figure


def _draw_box(ax, node: Node, centre: tuple[float, float], box: tuple[float, float]) -> None:
    """One rounded box with its label and, underneath in grey, its output shape."""
    (x, y), (w, h) = centre, box
    colour = _COLORS.get(node.kind) or next((c for k, c in _COLORS.items() if k in node.label.split(",")[0]), "#eee")
    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.06",
                           facecolor=colour, edgecolor="0.3", linewidth=0.8)
    ax.add_artist(patch)  # the axes limits are fixed: no need to update them
    lines = node.label.count("\n") + 1
    top = y - (lines + (node.shape is not None)) * _LINE / 2
    ax.text(x, top, node.label, ha="center", va="top", fontsize=_FONT, linespacing=1.2)
    shape = _shape(node.shape)
    if node.label.startswith("$") and shape:
        shape = f"$\\in\\mathbb{{R}}^{{{shape}}}$"
    ax.text(x, top + lines * _LINE + 0.01, shape, ha="center", va="top", fontsize=_SMALL, color="0.3")
    return patch


def _draw_arrow(ax, edge: Edge, by_name: dict, centres: dict, box, gap) -> None:
    """One arrow: straight between neighbouring boxes, around the boxes it would cross, or into the next column."""
    src, dst = by_name[edge.src], by_name[edge.dst]
    (xs, ys), (xd, yd) = centres[edge.src], centres[edge.dst]
    style = dict(arrowstyle="-|>", mutation_scale=9, linewidth=1.8 if edge.highlight else 0.9,
                 color="#c0392b" if edge.highlight else "0.25", shrinkA=0, shrinkB=0, zorder=3)
    half_w, half_h = box[0] / 2, box[1] / 2
    if src.group != dst.group:
        turn = xs + half_w + (gap[0] + _GROUP_GAP * (box[0] + gap[0])) / 2
        path = [(xs, ys + half_h), (xs, ys + half_h + gap[1] / 2), (turn, ys + half_h + gap[1] / 2),
                (turn, yd - half_h - gap[1] / 2), (xd, yd - half_h - gap[1] / 2), (xd, yd - half_h)]
        arrow = FancyArrowPatch(path=Path(path), **style)
    elif dst.row - src.row > 1 and xs == xd and _blocked(src, dst, by_name):
        side, ys, yd = xs + half_w + gap[0] / 3, ys + half_h / 3, yd - half_h / 3
        arrow = FancyArrowPatch(path=Path([(xs + half_w, ys), (side, ys), (side, yd), (xd + half_w, yd)]), **style)
    elif dst.row - src.row > 1:
        bend, end = yd - half_h - gap[1] / 2, xd + max(-half_w / 2, min(half_w / 2, xs - xd))
        arrow = FancyArrowPatch(path=Path([(xs, ys + half_h), (xs, bend), (end, yd - half_h)]), **style)
    else:
        arrow = FancyArrowPatch(_border((xs, ys), (xd, yd), box), _border((xd, yd), (xs, ys), box), **style)
    ax.add_artist(arrow)
    if edge.label:
        ax.text((xs + xd) / 2, (ys + yd) / 2, _math(edge.label), ha="center", va="center", fontsize=_SMALL, zorder=4,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none"))


def _border(centre: tuple[float, float], towards: tuple[float, float], box: tuple[float, float]):
    """Where the line from a box's centre towards a point leaves the box."""
    dx, dy = towards[0] - centre[0], towards[1] - centre[1]
    t = min(box[0] / 2 / abs(dx) if dx else math.inf, box[1] / 2 / abs(dy) if dy else math.inf)
    return centre[0] + t * dx, centre[1] + t * dy


def _blocked(src: Node, dst: Node, by_name: dict) -> bool:
    """Whether a box stands between `src` and `dst` in their lane."""
    return any(n.group == src.group and abs(n.x - src.x) < 0.5 and src.row < n.row < dst.row for n in by_name.values())
