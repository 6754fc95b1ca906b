"""Helpers for the course: data as tensors, training loops, plots and explorers."""

from d2l_support import distributed
from d2l_support.cnn import alexnet, init_cnn, layer_table, num_params, out_size
from d2l_support.data import (
    CacheDirError,
    ChecksumError,
    DataNotFoundError,
    TensorLoader,
    load_fashion_mnist,
    read_time_machine,
    synthetic_data,
    text_labels,
)
from d2l_support.device import get_device, keep_freed_memory, seed_everything
from d2l_support.diagrams import Diagram, DiagramError, draw_bptt, draw_model, draw_rnn
from d2l_support.figures import LivePlot, plot, show_images
from d2l_support.provenance import report_provenance, start_clock
from d2l_support.scales import current_scale, scale
from d2l_support.train import History, assert_quality, evaluate_accuracy, sgd_one_cycle, train_classifier
from d2l_support.widgets import frames_player, live_explorer

__all__ = [
    "CacheDirError", "ChecksumError", "DataNotFoundError", "Diagram", "DiagramError", "History", "LivePlot",
    "TensorLoader", "alexnet", "assert_quality", "current_scale", "distributed", "draw_bptt", "draw_model", "draw_rnn",
    "evaluate_accuracy", "frames_player", "get_device", "init_cnn", "keep_freed_memory", "layer_table", "live_explorer",
    "load_fashion_mnist", "num_params", "out_size", "plot", "read_time_machine", "report_provenance", "scale",
    "seed_everything", "sgd_one_cycle", "show_images", "start_clock", "synthetic_data", "text_labels",
    "train_classifier",
]
