"""Data loading: the lookup chain, checksums, atomic writes, loaders and their errors."""

import gzip
import hashlib
import io
import urllib.error

import pytest
import torch

from d2l_support import data


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No D2L_DATA_DIR, an empty cache, no Debian folder, no shared/data and no network."""
    monkeypatch.delenv("D2L_DATA_DIR", raising=False)
    monkeypatch.setenv("D2L_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(data, "shared_data_dir", lambda: tmp_path / "no-shared")

    def offline(url, timeout=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    return tmp_path


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def test_search_order(isolated, monkeypatch):
    monkeypatch.setenv("D2L_DATA_DIR", str(isolated / "mine"))
    dirs = data.search_dirs(isolated / "system")
    assert dirs == [isolated / "mine", isolated / "system", isolated / "no-shared", isolated / "cache"]


def test_fetch_prefers_data_dir_and_verifies(isolated, monkeypatch):
    (isolated / "mine").mkdir()
    (isolated / "mine" / "file.txt").write_bytes(b"hello")
    monkeypatch.setenv("D2L_DATA_DIR", str(isolated / "mine"))
    path = data.fetch("file.txt", "sha256", sha256(b"hello"), "http://example.invalid/file.txt")
    assert path == isolated / "mine" / "file.txt"


def test_fetch_gunzips_into_cache(isolated, monkeypatch):
    (isolated / "mine").mkdir()
    (isolated / "mine" / "file.bin.gz").write_bytes(gzip.compress(b"payload"))
    monkeypatch.setenv("D2L_DATA_DIR", str(isolated / "mine"))
    path = data.fetch("file.bin", "sha256", sha256(b"payload"), "http://example.invalid/file.bin")
    assert path == isolated / "cache" / "file.bin" and path.read_bytes() == b"payload"


def test_missing_data_without_network_explains_the_fixes(isolated):
    with pytest.raises(data.DataNotFoundError) as info:
        data.fetch("file.bin", "sha256", "0" * 64, "http://example.invalid/file.bin", hint="  - a hint;\n")
    message = str(info.value)
    for expected in ("no-shared", "cache", "http://example.invalid/file.bin", "D2L_DATA_DIR", "a hint", "internet"):
        assert expected in message


def test_fashion_mnist_missing_mentions_debian_package(isolated):
    with pytest.raises(data.DataNotFoundError, match="dataset-fashion-mnist"):
        data.fashion_mnist_root()


def test_corrupted_file_raises_checksum_error(isolated, monkeypatch):
    (isolated / "mine").mkdir()
    (isolated / "mine" / "file.bin.gz").write_bytes(gzip.compress(b"tampered"))
    monkeypatch.setenv("D2L_DATA_DIR", str(isolated / "mine"))
    with pytest.raises(data.ChecksumError, match="corrupted"):
        data.fetch("file.bin", "sha256", sha256(b"payload"), "http://example.invalid/file.bin")
    assert list((isolated / "cache").iterdir()) == []  # nothing half-written is left


def test_truncated_gzip_raises_checksum_error(isolated, monkeypatch):
    (isolated / "mine").mkdir()
    (isolated / "mine" / "file.bin.gz").write_bytes(gzip.compress(b"payload" * 1000)[:40])
    monkeypatch.setenv("D2L_DATA_DIR", str(isolated / "mine"))
    with pytest.raises(data.ChecksumError, match="truncated"):
        data.fetch("file.bin", "sha256", sha256(b"payload" * 1000), "http://example.invalid/file.bin")
    assert list((isolated / "cache").iterdir()) == []


def test_interrupted_download_leaves_no_partial_file(isolated, monkeypatch):
    class Broken(io.RawIOBase):
        """A response that delivers some bytes and then loses the connection."""

        sent = False

        def readinto(self, buffer):
            if self.sent:
                raise ConnectionResetError("connection reset by peer")
            self.sent = True
            buffer[:4] = b"part"
            return 4

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout=None: Broken())
    with pytest.raises(data.DataNotFoundError, match="connection reset"):
        data.fetch("file.txt", "sha256", sha256(b"partial payload"), "http://example.invalid/file.txt")
    assert not (isolated / "cache").exists() or list((isolated / "cache").iterdir()) == []


def test_download_is_verified_and_cached(isolated, monkeypatch):
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"from the web"))
    path = data.fetch("file.txt", "sha256", sha256(b"from the web"), "http://example.invalid/file.txt")
    assert path.read_bytes() == b"from the web"
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout=None: pytest.fail("downloaded twice"))
    assert data.fetch("file.txt", "sha256", sha256(b"from the web"), "http://example.invalid/file.txt") == path


def test_corrupted_cache_is_replaced(isolated, monkeypatch):
    (isolated / "cache").mkdir()
    (isolated / "cache" / "file.txt").write_bytes(b"stale")
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"fresh"))
    path = data.fetch("file.txt", "sha256", sha256(b"fresh"), "http://example.invalid/file.txt")
    assert path.read_bytes() == b"fresh"


def test_time_machine_is_verified():
    text = data.read_time_machine()
    assert text.startswith("The Time Machine, by H. G. Wells")
    assert hashlib.sha1(text.encode("utf-8")).hexdigest() == data.TIME_MACHINE_SHA1


def test_fashion_mnist_loaders():
    train_iter, test_iter = data.load_fashion_mnist(batch_size=256, device="cpu")
    assert (train_iter.num_examples, test_iter.num_examples) == (60_000, 10_000)
    assert len(train_iter) == 235
    X, y = next(iter(train_iter))
    assert X.shape == (256, 1, 28, 28) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert sorted(torch.unique(test_iter.tensors[1]).tolist()) == list(range(10))


def test_fashion_mnist_subset_and_resize():
    train_iter, test_iter = data.load_fashion_mnist(batch_size=100, resize=64, subset=300, device="cpu")
    assert train_iter.num_examples == test_iter.num_examples == 300
    X, _ = next(iter(test_iter))
    assert X.shape == (100, 1, 64, 64)


def test_shuffling_is_seeded_and_covers_every_example():
    X, y = torch.arange(10).float().reshape(10, 1), torch.arange(10)
    first = [b[1].tolist() for b in data.TensorLoader(X, y, batch_size=3, shuffle=True, seed=1)]
    again = [b[1].tolist() for b in data.TensorLoader(X, y, batch_size=3, shuffle=True, seed=1)]
    assert first == again and sorted(sum(first, [])) == list(range(10))
    assert first != [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    loader = data.TensorLoader(X, y, batch_size=3, shuffle=True, seed=1)
    assert [b[1].tolist() for b in loader] != [b[1].tolist() for b in loader]  # a new order every epoch


def test_loader_rejects_bad_input():
    with pytest.raises(ValueError, match="first dimension"):
        data.TensorLoader(torch.zeros(4, 2), torch.zeros(5), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        data.TensorLoader(torch.zeros(4, 2), batch_size=0)
    with pytest.raises(ValueError, match="resize"):
        data.load_fashion_mnist(batch_size=8, resize=-3)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        data.to_float_images(torch.zeros(2, 28, 28, dtype=torch.uint8))


def test_resize_matches_interpolate_on_the_whole_batch():
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    resized = data.to_float_images(images, size=56)
    expected = torch.nn.functional.interpolate(images.float() / 255, size=(56, 56), mode="bilinear")
    assert torch.allclose(resized, expected)


@pytest.mark.parametrize("size", [None, 96, 224])
def test_images_match_the_torchvision_pipeline(size):
    """The tensor pipeline gives the images of torchvision's PIL Resize + ToTensor, up to PIL's rounding to bytes."""
    from torchvision import datasets, transforms

    steps = [transforms.Resize(size)] if size else []
    reference = datasets.FashionMNIST(root=data.fashion_mnist_root(), train=False,
                                      transform=transforms.Compose([*steps, transforms.ToTensor()]))
    X, y = next(iter(data.load_fashion_mnist(32, resize=size)[1]))
    expected = torch.stack([reference[i][0] for i in range(32)])
    assert y.tolist() == [reference[i][1] for i in range(32)]
    assert X.shape == expected.shape
    difference = (X - expected).abs()
    assert difference.max() <= 1.001 / 255 and difference.mean() < 0.25 / 255
    if size is None:
        assert torch.equal(X, expected)


def test_synthetic_data():
    w = torch.tensor([2.0, -3.4])
    X, y = data.synthetic_data(w, 4.2, 1000, noise=0.0, generator=torch.Generator().manual_seed(0))
    assert X.shape == (1000, 2) and y.shape == (1000, 1)
    assert torch.allclose(y, X @ w.reshape(-1, 1) + 4.2, atol=1e-5)
    with pytest.raises(ValueError, match="vector"):
        data.synthetic_data(torch.zeros(2, 1), 0.0, 10)


def test_text_labels():
    assert data.text_labels(torch.tensor([0, 9])) == ["t-shirt", "ankle boot"]
