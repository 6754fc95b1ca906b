"""Datasets as tensors: synthetic regression data, Fashion-MNIST and The Time Machine (chapters 01, 02, 17)."""

import functools
import gzip
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

from d2l_support.device import get_device

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# SHA-256 of the decompressed original files: identical whether they come from Debian or the web.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_MNIST_LABELS = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
TIME_MACHINE_URL = "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt"
TIME_MACHINE_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"


class DataNotFoundError(FileNotFoundError):
    """A data set is neither on disk nor downloadable (chapter 02)."""


class ChecksumError(ValueError):
    """A data file is corrupted or truncated (chapter 02)."""


# ---------------------------------------------------------------- finding and fetching files


def cache_dir() -> Path:
    """Return the user cache folder, `$D2L_CACHE_DIR` or `~/.cache/d2l_support` (chapter 02)."""
    return Path(os.environ.get("D2L_CACHE_DIR", Path.home() / ".cache" / "d2l_support"))


def shared_data_dir() -> Path:
    """Return the `shared/data` folder beside a checkout of this repository (chapter 02)."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def search_dirs(*system_dirs: Path) -> list[Path]:
    """List the folders searched for data: `$D2L_DATA_DIR`, system folders, shared/data, the cache (chapter 02)."""
    dirs = [Path(os.environ["D2L_DATA_DIR"])] if os.environ.get("D2L_DATA_DIR") else []
    return [*dirs, *system_dirs, shared_data_dir(), cache_dir()]


def digest(path: Path, algorithm: str) -> str:
    """Return the hex digest of a file (chapter 02)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def materialise(source: str | Path, target: Path, algorithm: str, expected: str) -> Path:
    """Copy a local file or URL to `target`, gunzipping `.gz`, verifying its digest, writing atomically (chapter 02)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.part-{os.getpid()}")
    try:
        with _open_source(source) as raw, open(partial, "wb") as out:
            stream = gzip.GzipFile(fileobj=raw) if str(source).endswith(".gz") else raw
            shutil.copyfileobj(stream, out, 1 << 20)
        actual = digest(partial, algorithm)
        if actual != expected:
            raise ChecksumError(
                f"{source} is corrupted: its {algorithm} is {actual}, expected {expected}. "
                "Delete it and fetch it again."
            )
        os.replace(partial, target)
    except (EOFError, gzip.BadGzipFile) as error:
        raise ChecksumError(f"{source} is truncated or not a valid gzip file ({error}). Fetch it again.") from error
    finally:
        partial.unlink(missing_ok=True)
    return target


def _open_source(source: str | Path):
    """Open a local path or a URL for binary reading."""
    if str(source).startswith(("http://", "https://")):
        return urllib.request.urlopen(str(source), timeout=60)
    return open(source, "rb")


def _find(names: Sequence[str], dirs: Sequence[Path]) -> Path | None:
    """Return the first existing `dir/name` over dirs (outer) and names (inner), or None."""
    for folder in dirs:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def fetch(name: str, algorithm: str, expected: str, url: str, system_dirs: Sequence[Path] = (),
          target: Path | None = None, hint: str = "") -> Path:
    """Return a verified local copy of a data file, searching `search_dirs` before downloading (chapter 02)."""
    target = target or cache_dir() / name
    if target.is_file() and digest(target, algorithm) == expected:
        return target
    dirs = [d for d in search_dirs(*system_dirs) if d != cache_dir()]
    source = _find([name, f"{name}.gz"], dirs)
    if source is not None:
        if source.suffix != ".gz" and digest(source, algorithm) == expected:
            return source
        return materialise(source, target, algorithm, expected)
    try:
        return materialise(url, target, algorithm, expected)
    except (urllib.error.URLError, OSError) as error:
        looked = "\n".join(f"  - {d}" for d in [*dirs, cache_dir()])
        raise DataNotFoundError(
            f"Could not find {name} (or {name}.gz) in:\n{looked}\n"
            f"and could not download it from {url} ({error}).\n"
            f"Fix it in one of these ways:\n{hint}"
            "  - put the file in a folder and set D2L_DATA_DIR to that folder;\n"
            "  - connect to the internet and run again: the file is downloaded and verified."
        ) from error


# ---------------------------------------------------------------- minibatches of tensors


class TensorLoader:
    """Minibatches of in-memory tensors, shuffled and transformed batch by batch on their device (chapter 01)."""

    def __init__(self, *tensors: torch.Tensor, batch_size: int, shuffle: bool = False,
                 transform=None, seed: int = 0):
        if not tensors or any(t.shape[0] != tensors[0].shape[0] for t in tensors):
            shapes = [tuple(t.shape) for t in tensors]
            raise ValueError(f"tensors must share their first dimension, got shapes {shapes}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.tensors, self.batch_size, self.shuffle = tensors, batch_size, shuffle
        self.transform = transform
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def device(self) -> torch.device:
        """The device the data lives on."""
        return self.tensors[0].device

    @property
    def num_examples(self) -> int:
        """The number of examples per epoch."""
        return self.tensors[0].shape[0]

    def __len__(self) -> int:
        return -(-self.num_examples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = self.num_examples
        order = torch.randperm(n, generator=self.generator).to(self.device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                batch = [t[start:start + self.batch_size] for t in self.tensors]
            else:
                index = order[start:start + self.batch_size]
                batch = [t[index] for t in self.tensors]
            if self.transform is not None:
                batch[0] = self.transform(batch[0])
            yield tuple(batch)


def synthetic_data(w: torch.Tensor, b: float, num_examples: int, noise: float = 0.01,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw X ~ N(0, I) and y = Xw + b + N(0, noise^2), with y of shape (n, 1) (chapter 01)."""
    if w.ndim != 1:
        raise ValueError(f"w must be a vector of shape (d,), got shape {tuple(w.shape)}")
    X = torch.randn(num_examples, len(w), generator=generator)
    y = X @ w + b + noise * torch.randn(num_examples, generator=generator)
    return X, y.reshape(-1, 1)


# ---------------------------------------------------------------- Fashion-MNIST


def fashion_mnist_root() -> Path:
    """Return a folder in torchvision's layout holding the verified raw Fashion-MNIST files (chapter 02)."""
    raw = cache_dir() / "FashionMNIST" / "raw"
    hint = "  - on Debian or Ubuntu: sudo apt-get install dataset-fashion-mnist;\n"
    for name, sha256 in FASHION_MNIST_SHA256.items():
        target = raw / name
        source = fetch(name, "sha256", sha256, f"{FASHION_MNIST_URL}{name}.gz",
                       [FASHION_MNIST_DEBIAN_DIR], target=target, hint=hint)
        if source != target:
            materialise(source, target, "sha256", sha256)
    return cache_dir()


@functools.lru_cache(maxsize=2)
def _fashion_mnist_split(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one split once per process: uint8 images (N, 1, 28, 28) and int64 labels (N,)."""
    dataset = torchvision.datasets.FashionMNIST(str(root), train=train, download=False)
    return dataset.data.unsqueeze(1), dataset.targets


def load_fashion_mnist(batch_size: int, resize: int | None = None, subset: int | None = None,
                       device: torch.device | str | None = None, seed: int = 0) -> tuple[TensorLoader, TensorLoader]:
    """Return shuffled training and ordered test loaders of Fashion-MNIST kept on `device` (chapter 02).

    Images stay uint8 on the device and become float in [0, 1] (resized to `resize` pixels if given)
    one batch at a time; `subset` keeps the first examples of each split.
    """
    if resize is not None and (not isinstance(resize, int) or resize < 1):
        raise ValueError(f"resize must be a positive int (pixels), got {resize!r}")
    device = torch.device(device) if device is not None else get_device()
    root = fashion_mnist_root()
    loaders = []
    for train in (True, False):
        images, labels = _fashion_mnist_split(root, train)
        images, labels = images[:subset].to(device), labels[:subset].to(device)
        loaders.append(TensorLoader(images, labels, batch_size=batch_size, shuffle=train,
                                    transform=functools.partial(to_float_images, size=resize), seed=seed))
    return loaders[0], loaders[1]


def to_float_images(images: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Turn uint8 images (N, C, H, W) into floats in [0, 1], resized bilinearly to size x size (chapter 02)."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    images = images.float().div_(255)
    if size is not None and images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images


def text_labels(labels: Sequence[int] | torch.Tensor) -> list[str]:
    """Return the Fashion-MNIST class names of integer labels (chapter 02)."""
    return [FASHION_MNIST_LABELS[int(i)] for i in labels]


# ---------------------------------------------------------------- The Time Machine


def read_time_machine() -> str:
    """Return the text of H. G. Wells' The Time Machine, verified by its SHA-1 (chapter 17)."""
    path = fetch("timemachine.txt", "sha1", TIME_MACHINE_SHA1, TIME_MACHINE_URL)
    return path.read_text(encoding="utf-8")
