"""Datasets as tensors: synthetic regression data, Fashion-MNIST and The Time Machine (chapters 01, 02, 17)."""

import functools
import gzip
import hashlib
import os
import shutil
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

from d2l_support.device import get_device

FASHION_MNIST_URLS = (
    # HTTPS: the copy Keras downloads, on Google Cloud Storage.
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    # The original host (Zalando's S3 website endpoint): plain HTTP only, as that endpoint serves no HTTPS.
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
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
# Shipped with the package (d2l_support/data_files); the HTTPS URL is only a fallback.
TIME_MACHINE_URL = "https://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt"
TIME_MACHINE_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"


class DataNotFoundError(FileNotFoundError):
    """No good copy of a data set is on disk and none could be downloaded (chapter 02)."""


class ChecksumError(ValueError):
    """A data file is corrupted or truncated (chapter 02)."""


class CacheDirError(RuntimeError):
    """The user cache folder cannot be created (chapter 02)."""


# ---------------------------------------------------------------- finding and fetching files


def cache_dir() -> Path:
    """Return the user cache folder, `$D2L_CACHE_DIR` or `~/.cache/d2l_support` (chapter 02)."""
    return Path(os.environ.get("D2L_CACHE_DIR") or Path.home() / ".cache" / "d2l_support")


def package_data_dir() -> Path:
    """Return the folder of data files shipped inside the package, `d2l_support/data_files` (chapter 02)."""
    return Path(str(resources.files("d2l_support") / "data_files"))


def search_dirs(*system_dirs: Path) -> list[Path]:
    """List the folders searched for data: `$D2L_DATA_DIR`, the package, system folders, the cache (chapter 02)."""
    dirs = [Path(os.environ["D2L_DATA_DIR"])] if os.environ.get("D2L_DATA_DIR") else []
    return [*dirs, package_data_dir(), *system_dirs, cache_dir()]


def digest(path: Path, algorithm: str) -> str:
    """Return the hex digest of a file (chapter 02)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify(path: Path, algorithm: str, expected: str, source: str | Path | None = None) -> Path:
    """Return `path` if its digest is `expected`, else raise ChecksumError naming `source` and both digests."""
    actual = digest(path, algorithm)
    if actual != expected:
        raise ChecksumError(f"{source or path} is corrupted: its {algorithm} is {actual}, expected {expected}.")
    return path


def _make_folder(folder: Path) -> Path:
    """Create `folder` and its parents, or raise CacheDirError saying how to choose another."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CacheDirError(
            f"Cannot create the data folder {folder} ({error}). Point D2L_CACHE_DIR to a folder you can "
            "write to, e.g. `export D2L_CACHE_DIR=$HOME/.cache/d2l_support`, or remove what blocks the path."
        ) from error
    return folder


def materialise(source: str | Path, target: Path, algorithm: str, expected: str) -> Path:
    """Copy a local file or URL to `target`, gunzipping `.gz`, verifying its digest, writing atomically (chapter 02)."""
    _make_folder(target.parent)
    partial = target.with_name(f"{target.name}.part-{os.getpid()}")
    try:
        with _open_source(source) as raw, open(partial, "wb") as out:
            stream = gzip.GzipFile(fileobj=raw) if str(source).endswith(".gz") else raw
            shutil.copyfileobj(stream, out, 1 << 20)
        _verify(partial, algorithm, expected, source)
        os.replace(partial, target)
    except (EOFError, gzip.BadGzipFile) as error:
        raise ChecksumError(f"{source} is truncated or not a valid gzip file ({error}).") from error
    finally:
        partial.unlink(missing_ok=True)
    return target


def _open_source(source: str | Path):
    """Open a local path or a URL for binary reading."""
    if str(source).startswith(("http://", "https://")):
        return urllib.request.urlopen(str(source), timeout=60)
    return open(source, "rb")


def _candidates(name: str, dirs: Sequence[Path]) -> Iterator[Path]:
    """Yield every existing `dir/name` and `dir/name.gz`, folder by folder in the order of `dirs`."""
    for folder in dirs:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                yield candidate


def _usable_copy(source: Path, unpacked: Path, algorithm: str, expected: str) -> Path:
    """Return `source` verified, or for a `.gz` its verified decompression at `unpacked`."""
    if source.suffix == ".gz":
        return materialise(source, unpacked, algorithm, expected)
    return _verify(source, algorithm, expected)


def fetch(name: str, algorithm: str, expected: str, urls: Sequence[str], system_dirs: Sequence[Path] = (),
          target: Path | None = None, hint: str = "") -> Path:
    """Return a verified copy of a data file: the first good one in `search_dirs`, else a download (chapter 02).

    Bad copies are skipped with a warning. With `target` the file always ends up there (copied, gunzipped or
    downloaded), and a file already there is used only if its digest is right, else replaced; without it a plain
    copy is used where it lies and anything else goes to the cache.
    """
    rejected = []
    if target is not None and target.is_file():
        try:
            return _verify(target, algorithm, expected)
        except ChecksumError as error:
            warnings.warn(f"Replacing a bad copy of {name}: {error}", stacklevel=2)
            rejected.append(str(error))
    unpacked = target or cache_dir() / name
    dirs = search_dirs(*system_dirs)
    for source in _candidates(name, dirs):
        try:
            found = _usable_copy(source, unpacked, algorithm, expected)
        except ChecksumError as error:
            warnings.warn(f"Skipping a bad copy of {name}: {error}", stacklevel=2)
            rejected.append(str(error))
            continue
        return found if target in (None, found) else materialise(found, target, algorithm, expected)
    return _download(name, urls, unpacked, algorithm, expected, dirs, rejected, hint)


def _download(name: str, urls: Sequence[str], target: Path, algorithm: str, expected: str,
              dirs: Sequence[Path], rejected: Sequence[str], hint: str) -> Path:
    """Download `name` from the first URL that delivers a verified copy, or raise one error explaining every fix."""
    _make_folder(target.parent)
    failures = []
    for url in urls:
        try:
            return materialise(url, target, algorithm, expected)
        except (OSError, ChecksumError) as error:
            failures.append(f"  - {url}: {error}")
    looked = "\n".join(f"  - {d}" for d in dirs)
    bad = "".join(f"  - {reason}\n" for reason in rejected)
    raise DataNotFoundError(
        f"Could not find a good copy of {name} (or {name}.gz). Looked in:\n{looked}\n"
        + (f"and skipped these bad copies:\n{bad}" if bad else "")
        + "Could not download it either:\n" + "\n".join(failures) + "\n"
        + "Fix it in one of these ways:\n" + hint
        + ("  - delete the bad copies listed above, or replace them with good ones;\n" if bad else "")
        + f"  - put {name} (or {name}.gz) in a folder and set D2L_DATA_DIR to it, e.g. "
        "`export D2L_DATA_DIR=/path/to/folder`;\n"
        f"  - connect to the internet and run again: the file is downloaded into {target.parent} and verified."
    )


# ---------------------------------------------------------------- minibatches of tensors


class TensorLoader:
    """Minibatches of in-memory tensors, shuffled and transformed batch by batch on their device (chapter 01)."""

    def __init__(self, *tensors: torch.Tensor, batch_size: int, shuffle: bool = False,
                 transform=None, seed: int = 0):
        if not tensors or any(t.shape[0] != tensors[0].shape[0] for t in tensors):
            shapes = [tuple(t.shape) for t in tensors]
            raise ValueError(f"tensors must share their first dimension, got shapes {shapes}")
        _check_positive_int("batch_size", batch_size)
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


def _check_positive_int(name: str, value: object, largest: int | None = None) -> None:
    """Raise ValueError unless `value` is an int (not a bool) from 1 to `largest`, naming the range and the value."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if not (is_int and value >= 1 and (largest is None or value <= largest)):
        expected = f"an int from 1 to {largest}" if largest else "a positive int"
        raise ValueError(f"{name} must be {expected}, got {value!r}")


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
    hint = "  - on Debian or Ubuntu: `sudo apt-get install dataset-fashion-mnist`;\n"
    for name, sha256 in FASHION_MNIST_SHA256.items():
        fetch(name, "sha256", sha256, [f"{url}{name}.gz" for url in FASHION_MNIST_URLS],
              [FASHION_MNIST_DEBIAN_DIR], target=raw / name, hint=hint)
    return cache_dir()


@functools.lru_cache(maxsize=2)
def _fashion_mnist_split(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one split once per process: uint8 images (N, 1, 28, 28) and int64 labels (N,); never hand these out."""
    dataset = torchvision.datasets.FashionMNIST(str(root), train=train, download=False)
    return dataset.data.unsqueeze(1), dataset.targets


def load_fashion_mnist(batch_size: int, resize: int | None = None, subset: int | None = None,
                       device: torch.device | str | None = None, seed: int = 0) -> tuple[TensorLoader, TensorLoader]:
    """Return shuffled training and ordered test loaders of Fashion-MNIST kept on `device` (chapter 02).

    Images stay uint8 on the device and become float in [0, 1] (resized to `resize` pixels if given)
    one batch at a time; `subset` keeps the first examples of each split (at most 10,000, the test split's size).
    The loaders hold their own copies of the data, so changing them in place cannot affect a later load.
    """
    _check_positive_int("batch_size", batch_size)
    if resize is not None:
        _check_positive_int("resize (pixels)", resize)
    device = torch.device(device) if device is not None else get_device()
    root = fashion_mnist_root()
    if subset is not None:
        _check_positive_int("subset (examples per split)", subset, len(_fashion_mnist_split(root, False)[1]))
    loaders = []
    for train in (True, False):
        images, labels = _fashion_mnist_split(root, train)
        # copy=True: on the CPU a plain .to() would hand out views of the process-wide cache.
        images, labels = images[:subset].to(device, copy=True), labels[:subset].to(device, copy=True)
        loaders.append(TensorLoader(images, labels, batch_size=batch_size, shuffle=train,
                                    transform=functools.partial(to_float_images, size=resize), seed=seed))
    return loaders[0], loaders[1]


def to_float_images(images: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Turn uint8 images (N, C, H, W) into new float images in [0, 1], resized to size x size (chapter 02).

    Only uint8 input is accepted: floats may already be scaled, and dividing them again would be silently wrong.
    """
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 (0 to 255), got {images.dtype}; float images need no conversion")
    images = images.float().div_(255)  # .float() of uint8 is a new tensor, so dividing in place is safe
    if size is not None and images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images


def text_labels(labels: Sequence[int] | torch.Tensor) -> list[str]:
    """Return the Fashion-MNIST class names of integer labels (chapter 02)."""
    return [FASHION_MNIST_LABELS[int(i)] for i in labels]


# ---------------------------------------------------------------- The Time Machine


def read_time_machine() -> str:
    """Return H. G. Wells' The Time Machine, shipped with the package and verified by its SHA-1 (chapter 17)."""
    path = fetch("timemachine.txt", "sha1", TIME_MACHINE_SHA1, [TIME_MACHINE_URL])
    return path.read_text(encoding="utf-8")
