"""Data loading: the lookup chain, checksums, atomic writes, loaders and their errors."""

import gzip
import hashlib
import io
import random
import urllib.error

import pytest
import torch

from d2l_support import data


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No D2L_DATA_DIR, an empty cache, no Debian folder and no network; the package's own data stays."""
    monkeypatch.delenv("D2L_DATA_DIR", raising=False)
    monkeypatch.setenv("D2L_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "no-debian")

    def offline(url, timeout=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    return tmp_path


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def put(folder, name: str, payload: bytes):
    """Write `payload` to folder/name, creating the folder, and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(payload)
    return folder / name


def test_search_order(isolated, monkeypatch):
    monkeypatch.setenv("D2L_DATA_DIR", str(isolated / "mine"))
    dirs = data.search_dirs(isolated / "system")
    assert dirs == [isolated / "mine", data.package_data_dir(), isolated / "system", isolated / "cache"]
    assert not any("shared" in str(d) for d in dirs)  # a clone needs no neighbouring folders


def test_cache_dir_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("D2L_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.cache_dir() == tmp_path / ".cache" / "d2l_support"


def test_download_urls_use_https_where_the_host_offers_it():
    assert data.TIME_MACHINE_URL.startswith("https://")
    assert data.FASHION_MNIST_URLS[0].startswith("https://")  # the HTTP-only original comes last


def test_fetch_prefers_data_dir_and_verifies(isolated, monkeypatch):
    put(isolated / "mine", "file.txt", b"hello")
    put(isolated / "cache", "file.txt", b"hello")
    monkeypatch.setenv("D2L_DATA_DIR", str(isolated / "mine"))
    path = data.fetch("file.txt", "sha256", sha256(b"hello"), ["https://example.invalid/file.txt"])
    assert path == isolated / "mine" / "file.txt"


def test_fetch_gunzips_into_cache(isolated, monkeypatch):
    put(isolated / "mine", "file.bin.gz", gzip.compress(b"payload"))
    monkeypatch.setenv("D2L_DATA_DIR", str(isolated / "mine"))
    path = data.fetch("file.bin", "sha256", sha256(b"payload"), ["https://example.invalid/file.bin"])
    assert path == isolated / "cache" / "file.bin" and path.read_bytes() == b"payload"


def test_fetch_with_a_target_puts_the_file_there(isolated, monkeypatch):
    put(isolated / "mine", "file.bin", b"payload")
    monkeypatch.setenv("D2L_DATA_DIR", str(isolated / "mine"))
    target = isolated / "cache" / "raw" / "file.bin"
    assert data.fetch("file.bin", "sha256", sha256(b"payload"), [], target=target) == target
    assert target.read_bytes() == b"payload"


def test_missing_data_without_network_explains_the_fixes(isolated):
    with pytest.raises(data.DataNotFoundError) as info:
        data.fetch("file.bin", "sha256", "0" * 64, ["https://example.invalid/file.bin"], hint="  - a hint;\n")
    message = str(info.value)
    for expected in (str(data.package_data_dir()), str(isolated / "cache"), "https://example.invalid/file.bin",
                     "export D2L_DATA_DIR=", "a hint", "internet"):
        assert expected in message
    assert "shared" not in message and "bad copies" not in message


def test_fashion_mnist_missing_mentions_debian_package(isolated):
    with pytest.raises(data.DataNotFoundError, match="apt-get install dataset-fashion-mnist") as info:
        data.fashion_mnist_root()
    assert str(isolated / "no-debian") in str(info.value)


def test_a_bad_copy_is_skipped_for_a_good_one_further_down(isolated, monkeypatch):
    bad = put(isolated / "mine", "file.txt", b"tampered")
    put(isolated / "cache", "file.txt", b"payload")
    monkeypatch.setenv("D2L_DATA_DIR", str(isolated / "mine"))
    with pytest.warns(UserWarning, match=f"{bad} is corrupted"):
        path = data.fetch("file.txt", "sha256", sha256(b"payload"), ["https://example.invalid/file.txt"])
    assert path == isolated / "cache" / "file.txt"


def test_a_bad_time_machine_in_the_data_dir_falls_back_to_the_package(isolated, monkeypatch):
    put(isolated / "mine", "timemachine.txt", b"The Time Machine, by H. G. Wells [1898]\n(truncated)")
    monkeypatch.setenv("D2L_DATA_DIR", str(isolated / "mine"))
    with pytest.warns(UserWarning, match="timemachine.txt is corrupted"):
        text = data.read_time_machine()
    assert hashlib.sha1(text.encode("utf-8")).hexdigest() == data.TIME_MACHINE_SHA1


def test_only_bad_copies_raise_an_error_naming_them(isolated, monkeypatch):
    bad = put(isolated / "mine", "file.bin.gz", gzip.compress(b"tampered"))
    monkeypatch.setenv("D2L_DATA_DIR", str(isolated / "mine"))
    with pytest.warns(UserWarning), pytest.raises(data.DataNotFoundError) as info:
        data.fetch("file.bin", "sha256", sha256(b"payload"), ["https://example.invalid/file.bin"])
    assert f"{bad} is corrupted: its sha256 is {sha256(b'tampered')}" in str(info.value)
    assert "delete the bad copies" in str(info.value)
    assert list((isolated / "cache").iterdir()) == []  # nothing half-written is left


def test_truncated_gzip_is_reported_as_truncated(isolated, monkeypatch):
    put(isolated / "mine", "file.bin.gz", gzip.compress(b"payload" * 1000)[:40])
    monkeypatch.setenv("D2L_DATA_DIR", str(isolated / "mine"))
    with pytest.warns(UserWarning, match="truncated"), pytest.raises(data.DataNotFoundError, match="truncated"):
        data.fetch("file.bin", "sha256", sha256(b"payload" * 1000), ["https://example.invalid/file.bin"])
    assert list((isolated / "cache").iterdir()) == []


def test_a_cache_folder_that_cannot_be_created_is_named(isolated, monkeypatch):
    put(isolated, "a-file", b"")
    monkeypatch.setenv("D2L_CACHE_DIR", str(isolated / "a-file" / "cache"))
    with pytest.raises(data.CacheDirError, match="D2L_CACHE_DIR") as info:
        data.fetch("file.txt", "sha256", sha256(b"payload"), ["https://example.invalid/file.txt"])
    assert str(isolated / "a-file" / "cache") in str(info.value)


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
        data.fetch("file.txt", "sha256", sha256(b"partial payload"), ["https://example.invalid/file.txt"])
    assert not (isolated / "cache").exists() or list((isolated / "cache").iterdir()) == []


def test_download_is_verified_and_cached(isolated, monkeypatch):
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"from the web"))
    path = data.fetch("file.txt", "sha256", sha256(b"from the web"), ["https://example.invalid/file.txt"])
    assert path.read_bytes() == b"from the web"
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout=None: pytest.fail("downloaded twice"))
    assert data.fetch("file.txt", "sha256", sha256(b"from the web"), ["https://example.invalid/file.txt"]) == path


def test_download_falls_back_to_the_next_mirror(isolated, monkeypatch):
    def mirrors(url, timeout=None):
        if "first" in url:
            return io.BytesIO(b"wrong content")
        return io.BytesIO(b"payload")

    monkeypatch.setattr(data.urllib.request, "urlopen", mirrors)
    urls = ["https://first.invalid/file.txt", "http://second.invalid/file.txt"]
    assert data.fetch("file.txt", "sha256", sha256(b"payload"), urls).read_bytes() == b"payload"


def test_corrupted_cache_is_replaced(isolated, monkeypatch):
    put(isolated / "cache", "file.txt", b"stale")
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"fresh"))
    with pytest.warns(UserWarning, match="corrupted"):
        path = data.fetch("file.txt", "sha256", sha256(b"fresh"), ["https://example.invalid/file.txt"])
    assert path.read_bytes() == b"fresh"


def test_time_machine_ships_with_the_package(isolated):
    text = data.read_time_machine()  # offline, with an empty cache
    assert text.startswith("The Time Machine, by H. G. Wells")
    assert hashlib.sha1(text.encode("utf-8")).hexdigest() == data.TIME_MACHINE_SHA1
    assert not (isolated / "cache").exists()  # read in place, not copied


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


def test_callers_cannot_corrupt_the_cached_data():
    """Changing a batch or a loader's tensors in place must not change what a later load returns."""
    def tensors(loaders):
        return [t for loader in loaders for t in loader.tensors]

    first = data.load_fashion_mnist(batch_size=100, subset=300, device="cpu")
    expected = [t.clone() for t in tensors(first)]
    next(iter(first[1]))[1].zero_()  # a test batch is a slice of the loader's labels
    for t in tensors(first):
        t.zero_()
    again = data.load_fashion_mnist(batch_size=100, subset=300, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(tensors(again), expected, strict=True))


@pytest.mark.parametrize("subset", [-5, 0, 10_001, 60_000, True])
def test_subset_out_of_range_is_rejected(subset):
    with pytest.raises(ValueError, match=f"subset .*must be an int from 1 to 10000, got {subset!r}"):
        data.load_fashion_mnist(batch_size=8, subset=subset, device="cpu")


@pytest.mark.parametrize("batch_size", [True, 0, -1, 2.0])
def test_batch_size_must_be_a_positive_int_not_a_bool(isolated, batch_size):
    with pytest.raises(ValueError, match=f"batch_size must be a positive int, got {batch_size!r}"):
        data.TensorLoader(torch.zeros(4, 2), batch_size=batch_size)
    with pytest.raises(ValueError, match="batch_size"):  # before looking for the data, which is absent here
        data.load_fashion_mnist(batch_size=batch_size)


def test_float_images_are_rejected_and_left_unchanged():
    images = torch.rand(2, 1, 4, 4)
    before = images.clone()
    with pytest.raises(ValueError, match="must be uint8.*got torch.float32"):
        data.to_float_images(images)
    assert torch.equal(images, before)


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


# ---------------------------------------------------------------- a bad file already at the target


PAYLOAD = random.Random(0).randbytes(4096)  # incompressible, so that a cut gzip is truncated
BAD_COPIES = {"truncated": PAYLOAD[:100], "corrupted": PAYLOAD[:-1] + b"!", "empty": b""}


def serve(payloads: dict[str, bytes], requested: list[str]):
    """A stand-in for urlopen: record each URL and serve the bytes of the first key it contains."""
    def urlopen(url, timeout=None):
        requested.append(url)
        for key, payload in payloads.items():
            if key in url:
                return io.BytesIO(payload)
        raise urllib.error.URLError("network is unreachable")

    return urlopen


@pytest.mark.parametrize("bad", BAD_COPIES)
def test_a_bad_file_at_the_target_is_replaced_by_a_verified_local_copy(isolated, monkeypatch, bad):
    target = put(isolated / "cache" / "raw", "file.bin", BAD_COPIES[bad])
    put(isolated / "mine", "file.bin.gz", gzip.compress(PAYLOAD))
    monkeypatch.setenv("D2L_DATA_DIR", str(isolated / "mine"))
    with pytest.warns(UserWarning, match=f"Replacing a bad copy of file.bin: {target} is corrupted"):
        path = data.fetch("file.bin", "sha256", sha256(PAYLOAD), ["https://example.invalid/file.bin.gz"],
                          target=target)
    assert path == target and target.read_bytes() == PAYLOAD
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]  # no partial file left


@pytest.mark.parametrize("bad", BAD_COPIES)
def test_a_bad_file_at_the_target_is_replaced_by_a_verified_download(isolated, monkeypatch, bad):
    target = put(isolated / "cache" / "raw", "file.bin", BAD_COPIES[bad])
    requested = []
    monkeypatch.setattr(data.urllib.request, "urlopen", serve({"good": gzip.compress(PAYLOAD)}, requested))
    with pytest.warns(UserWarning, match=f"{target} is corrupted"):
        path = data.fetch("file.bin", "sha256", sha256(PAYLOAD), ["https://good.invalid/file.bin.gz"], target=target)
    assert path == target and target.read_bytes() == PAYLOAD and requested == ["https://good.invalid/file.bin.gz"]


def test_a_good_file_at_the_target_is_used_without_looking_further(isolated, monkeypatch):
    target = put(isolated / "cache" / "raw", "file.bin", PAYLOAD)
    monkeypatch.setattr(data, "search_dirs", lambda *dirs: pytest.fail("looked for another copy"))
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout=None: pytest.fail("downloaded"))
    assert data.fetch("file.bin", "sha256", sha256(PAYLOAD), ["https://example.invalid/file.bin"],
                      target=target) == target


def test_a_bad_file_at_the_target_that_nothing_replaces_is_named_in_the_error(isolated):
    target = put(isolated / "cache" / "raw", "file.bin", PAYLOAD[:100])
    with pytest.warns(UserWarning), pytest.raises(data.DataNotFoundError) as info:
        data.fetch("file.bin", "sha256", sha256(PAYLOAD), ["https://example.invalid/file.bin"], target=target)
    message = str(info.value)
    assert f"{target} is corrupted: its sha256 is {sha256(PAYLOAD[:100])}" in message
    assert "delete the bad copies" in message and "network is unreachable" in message


def test_a_bad_download_never_replaces_the_target(isolated, monkeypatch):
    """Truncated and corrupted responses are refused; the good mirror's copy is the one kept."""
    target = put(isolated / "cache" / "raw", "file.bin", b"stale")
    requested = []
    responses = {"short": gzip.compress(PAYLOAD)[:60], "wrong": gzip.compress(PAYLOAD + b"!"),
                 "good": gzip.compress(PAYLOAD)}
    monkeypatch.setattr(data.urllib.request, "urlopen", serve(responses, requested))
    urls = [f"https://{key}.invalid/file.bin.gz" for key in responses]
    with pytest.warns(UserWarning, match="corrupted"):
        assert data.fetch("file.bin", "sha256", sha256(PAYLOAD), urls, target=target).read_bytes() == PAYLOAD
    assert requested == urls
    target.write_bytes(b"stale")
    monkeypatch.setattr(data.urllib.request, "urlopen", serve({"short": responses["short"]}, []))
    with pytest.warns(UserWarning), pytest.raises(data.DataNotFoundError, match="truncated"):
        data.fetch("file.bin", "sha256", sha256(PAYLOAD), urls[:1], target=target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"] and target.read_bytes() == b"stale"


def test_a_bad_file_in_the_cache_is_skipped_for_the_archive_beside_it(isolated):
    bad = put(isolated / "cache", "file.bin", PAYLOAD[:100])
    put(isolated / "cache", "file.bin.gz", gzip.compress(PAYLOAD))
    with pytest.warns(UserWarning, match=f"{bad} is corrupted"):
        path = data.fetch("file.bin", "sha256", sha256(PAYLOAD), ["https://example.invalid/file.bin"])
    assert path == bad and bad.read_bytes() == PAYLOAD


@pytest.fixture
def one_fashion_mnist_file(isolated, monkeypatch):
    """Fashion-MNIST reduced to one small file, so that its lookup runs on synthetic bytes."""
    monkeypatch.setattr(data, "FASHION_MNIST_SHA256", {"train-images-idx3-ubyte": sha256(PAYLOAD)})
    return isolated / "cache" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"


def test_fashion_mnist_replaces_a_truncated_file_in_its_folder_from_debian(isolated, one_fashion_mnist_file):
    target = put(one_fashion_mnist_file.parent, one_fashion_mnist_file.name, PAYLOAD[:100])
    put(isolated / "no-debian", "train-images-idx3-ubyte.gz", gzip.compress(PAYLOAD))
    with pytest.warns(UserWarning, match=f"{target} is corrupted"):
        assert data.fashion_mnist_root() == isolated / "cache"
    assert target.read_bytes() == PAYLOAD


def test_fashion_mnist_replaces_a_truncated_file_in_its_folder_by_a_download(isolated, monkeypatch,
                                                                            one_fashion_mnist_file):
    target = put(one_fashion_mnist_file.parent, one_fashion_mnist_file.name, PAYLOAD[:100])
    requested = []
    monkeypatch.setattr(data.urllib.request, "urlopen", serve({"https://": gzip.compress(PAYLOAD)}, requested))
    with pytest.warns(UserWarning, match=f"{target} is corrupted"):
        assert data.fashion_mnist_root() == isolated / "cache"
    assert target.read_bytes() == PAYLOAD
    assert requested == [f"{data.FASHION_MNIST_URLS[0]}train-images-idx3-ubyte.gz"]
