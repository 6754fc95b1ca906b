"""Architecture diagrams: every box, label, shape and arrow is read from the model that is drawn."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from d2l_support.diagrams import DiagramError, draw_bptt, draw_model, draw_rnn


def small_cnn(kernel_size=5, channels=6):
    """A LeNet-like chain of layers for 1 x 16 x 16 images."""
    return nn.Sequential(nn.Conv2d(1, channels, kernel_size, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
                         nn.MaxPool2d(2, stride=2), nn.Flatten(), nn.LazyLinear(10))


class Branches(nn.Module):
    """An Inception-like block: four parallel paths concatenated along the channels."""

    def __init__(self, c):
        super().__init__()
        self.p1 = nn.Conv2d(c, 2, kernel_size=1)
        self.p2 = nn.Sequential(nn.Conv2d(c, 2, kernel_size=1), nn.Conv2d(2, 3, kernel_size=3, padding=1))
        self.p3 = nn.Conv2d(c, 4, kernel_size=5, padding=2)
        self.p4 = nn.MaxPool2d(3, stride=1, padding=1)

    def forward(self, x):
        return torch.cat((F.relu(self.p1(x)), self.p2(x), self.p3(x), self.p4(x)), dim=1)


class Residual(nn.Module):
    """The residual block of chapter 15, with an identity or a strided 1 x 1 convolution shortcut."""

    def __init__(self, c_in, c_out, use_1x1conv=False, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, stride=stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv3 = nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride) if use_1x1conv else None

    def forward(self, X):
        Y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(X)))))
        return F.relu(Y + (X if self.conv3 is None else self.conv3(X)))


class DataDependent(nn.Module):
    """A block whose forward pass branches on a tensor's value, which symbolic tracing cannot follow."""

    def forward(self, x):
        return x if x.sum() > 0 else -x


class RNNScratch(nn.Module):
    """The from-scratch RNN of chapter 18: row vectors, X_t W_xh + H W_hh, outputs H W_hq."""

    def __init__(self, vocab_size, num_hiddens):
        super().__init__()
        self.W_xh = nn.Parameter(torch.zeros(vocab_size, num_hiddens))
        self.W_hh = nn.Parameter(torch.zeros(num_hiddens, num_hiddens))
        self.b_h = nn.Parameter(torch.zeros(num_hiddens))
        self.W_hq = nn.Parameter(torch.zeros(num_hiddens, vocab_size))
        self.b_q = nn.Parameter(torch.zeros(vocab_size))


class RNNModel(nn.Module):
    """The concise RNN of chapter 18: nn.RNN and an nn.Linear output layer."""

    def __init__(self, vocab_size, num_hiddens, num_layers=1):
        super().__init__()
        self.rnn = nn.RNN(vocab_size, num_hiddens, num_layers=num_layers)
        self.dense = nn.Linear(num_hiddens, vocab_size)


def texts(diagram):
    """Every string written on the figure."""
    return [text.get_text() for text in diagram.figure.axes[0].texts]


def boxes(diagram):
    """The boxes by name."""
    return {node.name: node for node in diagram.nodes}


def arrows(diagram):
    """The arrows as (source, destination) pairs."""
    return {(edge.src, edge.dst) for edge in diagram.edges}


def test_each_layer_is_a_box_with_its_settings_and_measured_shape():
    net, X = small_cnn(), torch.zeros(1, 1, 16, 16)
    diagram = draw_model(net, X)
    assert [node.label for node in diagram.nodes] == [
        "input", "Conv2d 5×5, 1→6, pad 1", "BatchNorm2d, 6 channels", "ReLU", "MaxPool2d 2×2, stride 2", "Flatten",
        "Linear, 294→10"]
    shapes = [tuple(X.shape[1:])]
    for layer in net:
        X = layer(X)
        shapes.append(tuple(X.shape[1:]))
    assert [node.shape for node in diagram.nodes] == shapes
    written = texts(diagram)
    assert all(node.label in written and "×".join(map(str, node.shape)) in written for node in diagram.nodes)
    names = [node.name for node in diagram.nodes]
    assert arrows(diagram) == set(zip(names, names[1:]))


def test_changing_a_layer_changes_its_box():
    before = boxes(draw_model(small_cnn(), torch.zeros(1, 1, 16, 16)))
    after = boxes(draw_model(small_cnn(kernel_size=3, channels=8), torch.zeros(1, 1, 16, 16)))
    assert after["_0"].label == "Conv2d 3×3, 1→8, pad 1" != before["_0"].label
    assert after["_1"].label == "BatchNorm2d, 8 channels"
    assert (before["_0"].shape, after["_0"].shape) == ((6, 14, 14), (8, 16, 16))
    assert after["_5"].label == "Linear, 512→10"


def test_drawing_leaves_the_model_and_the_random_numbers_as_they_were():
    net, X = small_cnn().train(), torch.randn(2, 1, 16, 16)
    state = torch.random.get_rng_state()
    draw_model(net, X)
    assert net.training and all(m.training for m in net.modules())
    assert torch.equal(net[1].running_mean, torch.zeros(6)) and net[1].num_batches_tracked == 0
    assert torch.equal(torch.random.get_rng_state(), state)


def test_parallel_branches_sit_side_by_side_and_meet_at_the_concatenation():
    diagram = draw_model(Branches(3), torch.zeros(1, 3, 8, 8))
    nodes, cat = boxes(diagram), next(node for node in diagram.nodes if node.label == "concat")
    first = [dst for src, dst in arrows(diagram) if src == "x"]
    assert len(first) == 4 and len({nodes[name].x for name in first}) == 4
    assert len({nodes[name].row for name in first}) == 1
    assert sum((src, cat.name) in arrows(diagram) for src in nodes) == 4
    assert cat.shape == (2 + 3 + 4 + 3, 8, 8) and cat.kind == "merge"
    assert nodes["x"].x == cat.x == sum(nodes[name].x for name in first) / 4


def test_identity_shortcut_is_an_arrow_from_the_input_to_the_addition():
    diagram = draw_model(Residual(3, 3), torch.zeros(1, 3, 6, 6))
    add = next(node for node in diagram.nodes if node.label == "add")
    assert ("x", add.name) in arrows(diagram) and ("bn2", add.name) in arrows(diagram)
    assert add.row - boxes(diagram)["x"].row > 1  # the shortcut skips the branch, drawn around it
    assert not any(node.name == "conv3" for node in diagram.nodes)


def test_projection_shortcut_is_a_strided_1x1_convolution_beside_the_branch():
    diagram = draw_model(Residual(3, 6, use_1x1conv=True, stride=2), torch.zeros(1, 3, 6, 6))
    nodes = boxes(diagram)
    add = next(node for node in diagram.nodes if node.label == "add")
    assert {("x", "conv3"), ("conv3", add.name), ("bn2", add.name)} <= arrows(diagram)
    assert nodes["conv3"].label == "Conv2d 1×1, 3→6, stride 2" and nodes["conv3"].shape == (6, 3, 3)
    assert nodes["conv3"].x != nodes["conv1"].x


def test_collapse_and_depth_draw_whole_modules_as_one_box():
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), Residual(3, 3), nn.Sequential(nn.ReLU(), nn.Flatten()))
    X = torch.zeros(1, 3, 4, 4)
    collapsed = draw_model(net, X, collapse=(Residual,))
    assert [node.label for node in collapsed.nodes] == [
        "input", "Conv2d 3×3, 3→3, pad 1", "1: Residual\n2 Conv2d, 2 BatchNorm2d", "ReLU", "Flatten"]
    shallow = draw_model(net, X, depth=1)
    assert shallow.nodes[-1].label == "2: Sequential\nReLU, Flatten" and shallow.nodes[-1].shape == (48,)


def test_a_long_chain_wraps_into_columns():
    net = nn.Sequential(*[nn.ReLU() for _ in range(29)])
    diagram = draw_model(net, torch.zeros(1, 4), max_rows=10)
    assert max(node.group for node in diagram.nodes) == 2 and max(node.row for node in diagram.nodes) == 9
    assert diagram.figure.get_figwidth() < 8


def test_columns_break_only_where_a_single_arrow_crosses():
    net = nn.Sequential(Residual(2, 2), Residual(2, 2), nn.Flatten())
    diagram = draw_model(net, torch.zeros(1, 2, 3, 3), max_rows=6)
    nodes = boxes(diagram)
    between = [(src, dst) for src, dst in arrows(diagram) if nodes[src].group != nodes[dst].group]
    assert len(between) == max(node.group for node in diagram.nodes) >= 2
    assert all(nodes[dst].group == nodes[src].group + 1 and nodes[dst].row == 0 for src, dst in between)


def test_an_untraceable_block_is_named_with_a_fix():
    net = nn.Sequential(nn.Linear(4, 4), DataDependent())
    with pytest.raises(DiagramError, match=r"DataDependent '1'.*collapse=\(DataDependent,\)"):
        draw_model(net, torch.zeros(1, 4))
    assert [node.label for node in draw_model(net, torch.zeros(1, 4), collapse=(DataDependent,)).nodes] == [
        "input", "Linear, 4→4", "1: DataDependent\nno layers"]


def test_an_input_that_does_not_fit_is_explained():
    with pytest.raises(DiagramError, match=r"input of shape \(1, 3, 16, 16\) does not fit Sequential"):
        draw_model(small_cnn(), torch.zeros(1, 3, 16, 16))


def test_a_diagram_shows_itself_as_a_png():
    diagram = draw_model(nn.Sequential(nn.Linear(2, 3)), torch.zeros(1, 2))
    png, metadata = diagram._repr_png_()
    assert png.startswith(b"\x89PNG") and metadata["width"] > 0
    assert repr(diagram) == "Diagram(2 boxes, 1 arrows)"


@pytest.mark.parametrize(("model", "vocab", "symbols"), [
    (RNNScratch(7, 16), 7, ["W_xh", "W_hh", "W_hq"]),
    (RNNModel(9, 12), 9, ["W_xh = rnn.weight_ih_l0", "W_hh = rnn.weight_hh_l0", "W_hq = dense.weight"]),
])
def test_the_unrolled_rnn_reads_its_sizes_from_the_parameters(model, vocab, symbols):
    diagram = draw_rnn(model, steps=4)
    nodes, hidden = boxes(diagram), len(next(p for name, p in model.named_parameters() if "hh" in name))
    assert [nodes[name].shape for name in ("x4", "h4", "o4", "h0")] == [(vocab,), (hidden,), (vocab,), (hidden,)]
    assert {("h3", "h4"), ("x4", "h4"), ("h4", "o4")} <= arrows(diagram) and len(diagram.edges) == 12
    shapes = [tuple(p.shape) for name, p in model.named_parameters() if "weight" in name or name.startswith("W_")]
    captions = [text for text in texts(diagram) if " " in text and "×" in text]
    assert len(captions) == 3
    for caption, symbol, shape in zip(captions, symbols, shapes):
        name, _, rest = symbol.partition(" ")
        letter, _, subscript = name.partition("_")
        assert caption == f"${letter}_{{{subscript}}}$ {rest}".strip() + f": {shape[0]}×{shape[1]}"


def test_the_rnn_of_chapter_19_is_read_from_a_dict_of_column_vector_weights():
    weights = {"W_hx": torch.zeros(4, 3), "W_hh": torch.zeros(4, 4), "W_qh": torch.zeros(5, 4)}
    nodes = boxes(draw_rnn(weights, steps=2))
    assert (nodes["x1"].shape, nodes["h1"].shape, nodes["o1"].shape) == ((3,), (4,), (5,))


def test_bptt_highlights_the_paths_the_gradient_sums_over():
    weights = {"W_hx": torch.zeros(4, 3), "W_hh": torch.zeros(4, 4), "W_qh": torch.zeros(5, 4)}
    diagram = draw_bptt(weights, steps=3)
    red = {(edge.src, edge.dst) for edge in diagram.edges if edge.highlight}
    recurrent = {(f"h{t - 1}", f"h{t}") for t in range(1, 4)}
    to_loss = {(f"h{t}", f"o{t}") for t in range(1, 4)} | {(f"o{t}", "L") for t in range(1, 4)}
    assert red == recurrent | to_loss
    output_only = {(e.src, e.dst) for e in draw_bptt(weights, steps=3, wrt="W_qh").edges if e.highlight}
    assert output_only == to_loss
    with pytest.raises(ValueError, match="wrt must name one of the weights"):
        draw_bptt(weights, wrt="W_xh")


def test_rnns_the_diagram_cannot_show_are_refused():
    with pytest.raises(ValueError, match="one-layer"):
        draw_rnn(RNNModel(5, 4, num_layers=2))
    with pytest.raises(ValueError, match="expected one output weight"):
        draw_rnn(nn.RNN(5, 4))
    with pytest.raises(ValueError, match="must be square"):
        draw_rnn({"W_xh": torch.zeros(5, 4), "W_hh": torch.zeros(4, 3), "W_hq": torch.zeros(4, 5)})
