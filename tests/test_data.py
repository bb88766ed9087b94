"""Tests of bpcompile.data: file formats, search order, downloads, splits, synthetic data, BatchLoader.

Every data file is written by the tests into tmp_path; nothing depends on a
real data directory or the network (downloads use file:// mirrors)."""

import hashlib
import io
import pickle
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from bpcompile.data import BatchLoader, DataSplits, load_dataset, random_batch
from bpcompile.data import cifar, download, mnist
from bpcompile.data.idx import read_idx, write_idx
from bpcompile.errors import BpcompileError
from bpcompile.spec import CIFAR10, MNIST, FashionMNIST, Synthetic

IDX_NAMES = mnist.IDX_FILES
DEFAULT_FASHION_DIRS = list(mnist.FASHION_SYSTEM_DIRS)  # before the fixture patches it away


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No real cache, env root or system data directory may leak into a test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("BPCOMPILE_DATA", raising=False)
    monkeypatch.setattr(mnist, "FASHION_SYSTEM_DIRS", [])
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", [(tmp_path / "no-mirror").as_uri() + "/"])
    monkeypatch.setattr(mnist, "FASHION_MIRRORS", [(tmp_path / "no-mirror").as_uri() + "/"])
    monkeypatch.setattr(cifar, "CIFAR10_URLS", [(tmp_path / "no-mirror" / "c.tar.gz").as_uri()])


def cache(tmp_path) -> Path:
    return tmp_path / "xdg" / "bpcompile"


def write_mnist_dir(d: Path, marker: int, n_train=6, n_test=4, gz=True) -> dict[str, torch.Tensor]:
    """Four IDX files whose pixels are all `marker` (to tell directories apart), labels i % 10."""
    d.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": torch.full((n_train, 28, 28), marker, dtype=torch.uint8),
        "train-labels-idx1-ubyte": (torch.arange(n_train) % 10).to(torch.uint8),
        "t10k-images-idx3-ubyte": torch.full((n_test, 28, 28), marker, dtype=torch.uint8),
        "t10k-labels-idx1-ubyte": (torch.arange(n_test) % 10).to(torch.uint8),
    }
    for name, a in arrays.items():
        write_idx(d / (name + ".gz" if gz else name), a)
    return arrays


def loaded_marker(splits: DataSplits) -> int:
    return int(splits.train_x[0, 0, 0, 0])


# ---------------------------------------------------------------- IDX format


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 5, 4), (2, 28, 28)])
def test_idx_round_trip(tmp_path, suffix, shape):
    a = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    p = tmp_path / f"f-idx{suffix}"
    write_idx(p, a)
    assert (p.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    b = read_idx(p)
    assert b.dtype == torch.uint8 and b.shape == a.shape and torch.equal(a, b)


def test_idx_header_layout(tmp_path):
    p = tmp_path / "labels-idx1-ubyte"
    write_idx(p, np.array([1, 2, 3], dtype=np.uint8))
    assert p.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])  # magic 0x00000801, count 3, values


def test_idx_gz_detected_by_content_not_name(tmp_path):
    a = torch.arange(12, dtype=torch.uint8).reshape(3, 4)
    write_idx(tmp_path / "x.gz", a)
    (tmp_path / "x.gz").rename(tmp_path / "plain-name")
    assert torch.equal(read_idx(tmp_path / "plain-name"), a)


def test_idx_truncated_plain(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte"
    write_idx(p, torch.zeros(4, 28, 28, dtype=torch.uint8))
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(BpcompileError, match="truncated") as e:
        read_idx(p)
    assert str(p) in str(e.value)


def test_idx_truncated_gzip(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(p, torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8))
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(BpcompileError) as e:
        read_idx(p)
    assert str(p) in str(e.value)


def test_idx_bad_magic_and_extra_bytes(tmp_path):
    p = tmp_path / "t10k-labels-idx1-ubyte"
    p.write_bytes(b"PK\x03\x04 this is a zip file")
    with pytest.raises(BpcompileError, match="not an IDX file") as e:
        read_idx(p)
    assert str(p) in str(e.value)
    write_idx(p, np.zeros(5, dtype=np.uint8))
    p.write_bytes(p.read_bytes() + b"\x00")
    with pytest.raises(BpcompileError, match="longer than its header"):
        read_idx(p)
    p.write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"\x00" * 4)  # float32 IDX
    with pytest.raises(BpcompileError, match="0x0d"):
        read_idx(p)


def test_labels_images_mismatch_names_both_files(tmp_path):
    d = tmp_path / "m"
    write_mnist_dir(d, 1)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8))  # 5 labels for 6 images
    with pytest.raises(BpcompileError) as e:
        load_dataset(MNIST(download=False), data_dir=str(d))
    assert "train-labels-idx1-ubyte.gz" in str(e.value) and "train-images-idx3-ubyte.gz" in str(e.value)


# ---------------------------------------------------------------- search order


def test_search_order(tmp_path, monkeypatch):
    a, b, c = tmp_path / "cli", tmp_path / "spec", tmp_path / "env"
    write_mnist_dir(a, 1)
    write_mnist_dir(b / "mnist", 2)
    write_mnist_dir(c, 3)
    write_mnist_dir(cache(tmp_path) / "mnist", 4)
    monkeypatch.setenv("BPCOMPILE_DATA", str(c))
    spec = MNIST(dir=str(b), download=False)

    s = load_dataset(spec, data_dir=str(a))
    assert loaded_marker(s) == 1 and str(a) in s.source
    assert loaded_marker(load_dataset(spec, data_dir=str(tmp_path / "empty"))) == 2
    assert loaded_marker(load_dataset(MNIST(download=False))) == 3
    monkeypatch.delenv("BPCOMPILE_DATA")
    s = load_dataset(MNIST(download=False))
    assert loaded_marker(s) == 4 and str(cache(tmp_path) / "mnist") in s.source


def test_default_cache_is_home_dot_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_mnist_dir(tmp_path / "home" / ".cache" / "bpcompile" / "mnist", 9)
    assert loaded_marker(load_dataset(MNIST(download=False))) == 9


def test_torchvision_layout_plain_files(tmp_path):
    arrays = write_mnist_dir(tmp_path / "root" / "MNIST" / "raw", 5, gz=False)
    s = load_dataset(MNIST(download=False), data_dir=str(tmp_path / "root"))
    assert s.train_x.shape == (6, 1, 28, 28) and s.train_x.dtype == torch.uint8
    assert s.train_y.dtype == torch.int64 and torch.equal(s.train_y, arrays["train-labels-idx1-ubyte"].long())
    assert s.test_x.shape == (4, 1, 28, 28) and s.input_shape == (1, 28, 28) and s.num_classes == 10
    assert s.val_x is None and s.val_y is None


@pytest.mark.parametrize("sub", ["fashion_mnist", "fashion-mnist", "FashionMNIST/raw"])
def test_fashion_layouts(tmp_path, sub):
    write_mnist_dir(tmp_path / "root" / sub, 7)
    write_mnist_dir(tmp_path / "root" / "mnist", 8)  # must not be taken for Fashion-MNIST
    s = load_dataset(FashionMNIST(download=False), data_dir=str(tmp_path / "root"))
    assert s.name == "fashion_mnist" and loaded_marker(s) == 7


def test_fashion_debian_system_dir(tmp_path, monkeypatch):
    system = tmp_path / "usr" / "share" / "datasets" / "fashion-mnist"
    write_mnist_dir(system, 6)
    monkeypatch.setattr(mnist, "FASHION_SYSTEM_DIRS", [system])
    assert loaded_marker(load_dataset(FashionMNIST(download=False))) == 6
    assert Path("/usr/share/datasets/fashion-mnist") in DEFAULT_FASHION_DIRS  # Debian's dataset-fashion-mnist


# ---------------------------------------------------------------- not found, downloads


def assert_names_everything(msg: str, dirs):
    for name in IDX_NAMES:
        assert name in msg
    for d in dirs:
        assert str(d) in msg
    assert "--data-dir" in msg and "BPCOMPILE_DATA" in msg and "data.dir" in msg


def test_missing_files_download_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("BPCOMPILE_DATA", str(tmp_path / "env"))
    d, sd = tmp_path / "cli", tmp_path / "specdir"
    write_mnist_dir(d / "mnist", 1)
    for f in d.glob("mnist/t10k-*"):
        f.unlink()  # an incomplete copy: train files only
    with pytest.raises(BpcompileError) as e:
        load_dataset(MNIST(dir=str(sd), download=False), data_dir=str(d))
    msg = str(e.value)
    tried = [d, d / "mnist", d / "MNIST" / "raw", sd, sd / "mnist", tmp_path / "env", cache(tmp_path) / "mnist",
             cache(tmp_path) / "MNIST" / "raw"]
    assert_names_everything(msg, tried)
    assert "data.download is false" in msg and "lacks t10k-images-idx3-ubyte" in msg
    assert "\n" not in msg


def test_missing_files_download_fails(tmp_path):
    with pytest.raises(BpcompileError) as e:
        load_dataset(MNIST(), data_dir=str(tmp_path / "cli"))
    msg = str(e.value)
    assert_names_everything(msg, [tmp_path / "cli", cache(tmp_path) / "mnist"])
    assert "Downloading into" in msg and "no-mirror/train-images-idx3-ubyte.gz" in msg
    assert not any(p.is_file() for p in cache(tmp_path).rglob("*"))


def make_mirror(tmp_path, marker=3) -> tuple[str, dict[str, str], dict[str, torch.Tensor]]:
    """A file:// mirror of four small .gz IDX files and their md5 table."""
    d = tmp_path / "mirror"
    arrays = write_mnist_dir(d, marker, n_train=5, n_test=3)
    md5s = {f"{n}.gz": hashlib.md5((d / f"{n}.gz").read_bytes()).hexdigest() for n in IDX_NAMES}
    return d.as_uri() + "/", md5s, arrays


def test_download_success_with_fallback_mirror(tmp_path, monkeypatch):
    url, md5s, arrays = make_mirror(tmp_path)
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", [(tmp_path / "dead").as_uri() + "/", url])
    monkeypatch.setattr(mnist, "MNIST_MD5", md5s)
    s = load_dataset(MNIST())
    target = cache(tmp_path) / "mnist"
    assert sorted(p.name for p in target.iterdir()) == sorted(md5s)  # the four files, no .part left over
    for name, md5 in md5s.items():
        assert hashlib.md5((target / name).read_bytes()).hexdigest() == md5
    assert s.train_x.shape == (5, 1, 28, 28) and torch.equal(s.test_y, arrays["t10k-labels-idx1-ubyte"].long())
    assert str(target) in s.source
    # A second load finds the cached files and needs no mirror.
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", [])
    assert torch.equal(load_dataset(MNIST()).train_x, s.train_x)


def test_download_md5_mismatch_leaves_nothing(tmp_path, monkeypatch):
    url, md5s, _ = make_mirror(tmp_path)
    md5s["train-images-idx3-ubyte.gz"] = "0" * 32
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", [url])
    monkeypatch.setattr(mnist, "MNIST_MD5", md5s)
    with pytest.raises(BpcompileError, match="md5 mismatch"):
        load_dataset(MNIST())
    assert list((cache(tmp_path) / "mnist").iterdir()) == []


def test_fashion_download(tmp_path, monkeypatch):
    url, md5s, _ = make_mirror(tmp_path, marker=11)
    monkeypatch.setattr(mnist, "FASHION_MIRRORS", [url])
    monkeypatch.setattr(mnist, "FASHION_MD5", md5s)
    s = load_dataset(FashionMNIST())
    assert loaded_marker(s) == 11 and (cache(tmp_path) / "fashion_mnist" / "t10k-images-idx3-ubyte.gz").is_file()


# ---------------------------------------------------------------- embedded subset


def test_embedded_subset():
    s = load_dataset(MNIST(subset="embedded", download=False), data_dir="/nonexistent")
    assert s.train_x.shape == (8000, 1, 28, 28) and s.test_x.shape == (2000, 1, 28, 28)
    assert s.train_y.shape == (8000,) and s.test_y.shape == (2000,) and s.train_x.dtype == torch.uint8
    for y in (s.train_y, s.test_y):
        assert y.dtype == torch.int64 and int(y.min()) == 0 and int(y.max()) == 9
    # Same split whatever the run seed; pinned so a change of split is noticed.
    again = load_dataset(MNIST(subset="embedded"), seed=123)
    assert torch.equal(again.test_x, s.test_x) and torch.equal(again.train_y, s.train_y)
    assert torch.bincount(s.test_y).tolist() == [181, 242, 208, 206, 186, 181, 182, 196, 198, 220]
    assert s.test_y[:12].tolist() == [6, 6, 5, 4, 3, 7, 2, 9, 2, 6, 5, 3]
    # Disjoint and complete: train + test is exactly the shipped 10k set (as a multiset of examples).
    full_x = read_idx(mnist.EMBEDDED_DIR / "t10k-images-idx3-ubyte.gz")
    full_y = read_idx(mnist.EMBEDDED_DIR / "t10k-labels-idx1-ubyte.gz")

    def examples(x, y):
        return Counter(xi.numpy().tobytes() + bytes([int(yi)]) for xi, yi in zip(x.reshape(len(x), -1), y))

    assert examples(s.train_x, s.train_y) + examples(s.test_x, s.test_y) == examples(full_x, full_y)
    assert 0.12 < float(s.mean) < 0.15 and 0.29 < float(s.std) < 0.33


def test_embedded_files_are_official():
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in mnist.EMBEDDED_DIR.glob("*.gz")}
    assert md5 == {k: v for k, v in mnist.MNIST_MD5.items() if k.startswith("t10k")}


# ---------------------------------------------------------------- CIFAR-10


def cifar_image(k: int) -> tuple[np.ndarray, np.ndarray]:
    """An official-format row for an image whose planes differ: R = 10k + i, G = 100 + j, B = 200 + (i + j) % 50."""
    i, j = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    planes = np.stack([10 * k + i, 100 + j, 200 + (i + j) % 50]).astype(np.uint8)  # (3, 32, 32)
    return planes.reshape(-1), planes


def write_cifar_dir(d: Path, sizes=(2, 1, 3, 1, 2), n_test=2, protocol=2, str_keys=False):
    """The six batches, written like the official ones; image k of the whole train set gets label k % 10."""
    d.mkdir(parents=True, exist_ok=True)
    k = 0
    for b, n in enumerate(list(sizes) + [n_test]):
        rows = np.stack([cifar_image(k + r)[0] for r in range(n)])
        labels = [(k + r) % 10 for r in range(n)]
        key = (lambda s: s) if str_keys else (lambda s: s.encode())
        batch = {key("batch_label"): key(f"batch {b}"), key("data"): rows, key("labels"): labels,
                 key("filenames"): [key(f"img{k + r}.png") for r in range(n)]}
        name = f"data_batch_{b + 1}" if b < len(sizes) else "test_batch"
        (d / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        k += n
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2))


@pytest.mark.parametrize("protocol,str_keys", [(2, False), (5, True)])
def test_cifar_loader_channel_order(tmp_path, protocol, str_keys):
    write_cifar_dir(tmp_path / "cifar-10-batches-py", protocol=protocol, str_keys=str_keys)
    s = load_dataset(CIFAR10(download=False), data_dir=str(tmp_path))
    assert s.train_x.shape == (9, 3, 32, 32) and s.train_x.dtype == torch.uint8
    assert s.test_x.shape == (2, 3, 32, 32) and s.input_shape == (3, 32, 32)
    assert s.train_y.tolist() == [k % 10 for k in range(9)] and s.test_y.tolist() == [9, 0]
    for k in (0, 4, 8):  # batches concatenated in order 1..5
        planes = torch.from_numpy(cifar_image(k)[1])
        assert torch.equal(s.train_x[k, 0], planes[0])  # red plane, row-major: x[k, 0, i, j] = 10k + i
        assert torch.equal(s.train_x[k, 1], planes[1])
        assert torch.equal(s.train_x[k, 2], planes[2])
    assert int(s.train_x[4, 0, 7, 3]) == 47 and int(s.train_x[4, 1, 7, 3]) == 103
    assert s.mean.shape == (3,) and s.std.shape == (3,) and float(s.mean[1]) > float(s.mean[0])


def test_cifar_nested_layout_and_missing(tmp_path):
    root = tmp_path / "root"
    write_cifar_dir(root / "cifar10" / "cifar-10-batches-py")
    assert len(load_dataset(CIFAR10(download=False), data_dir=str(root)).train_x) == 9
    (root / "cifar10" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(BpcompileError) as e:
        load_dataset(CIFAR10(download=False), data_dir=str(root))
    msg = str(e.value)
    assert "data_batch_3" in msg and "test_batch" in msg and str(root / "cifar-10-batches-py") in msg
    assert "lacks data_batch_3" in msg and "data.download is false" in msg


def test_cifar_refuses_code_in_pickle(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    d = tmp_path / "cifar-10-batches-py"
    write_cifar_dir(d)
    (d / "data_batch_2").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(BpcompileError) as e:
        load_dataset(CIFAR10(download=False), data_dir=str(tmp_path))
    assert str(d / "data_batch_2") in str(e.value) and not marker.exists()


def test_cifar_bad_row_length(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    write_cifar_dir(d)
    (d / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(BpcompileError, match="3072") as e:
        load_dataset(CIFAR10(download=False), data_dir=str(tmp_path))
    assert str(d / "test_batch") in str(e.value)


def make_tarball(tmp_path, extra_member=None) -> tuple[str, str]:
    src = tmp_path / "src"
    write_cifar_dir(src / "cifar-10-batches-py")
    tgz = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        if extra_member:
            info = tarfile.TarInfo(extra_member)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    return tgz.as_uri(), hashlib.md5(tgz.read_bytes()).hexdigest()


def test_cifar_download_and_extract(tmp_path, monkeypatch):
    url, md5 = make_tarball(tmp_path)
    monkeypatch.setattr(cifar, "CIFAR10_URLS", [url])
    monkeypatch.setattr(cifar, "CIFAR10_MD5", md5)
    s = load_dataset(CIFAR10())
    home = cache(tmp_path) / "cifar10"
    assert len(s.train_x) == 9 and (home / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert sorted(p.name for p in home.iterdir()) == ["cifar-10-batches-py"]  # archive and temp dirs removed


def test_cifar_download_md5_mismatch(tmp_path, monkeypatch):
    url, _ = make_tarball(tmp_path)
    monkeypatch.setattr(cifar, "CIFAR10_URLS", [url])
    monkeypatch.setattr(cifar, "CIFAR10_MD5", "1" * 32)
    with pytest.raises(BpcompileError, match="md5 mismatch"):
        load_dataset(CIFAR10())
    assert list((cache(tmp_path) / "cifar10").iterdir()) == []


@pytest.mark.parametrize("member", ["../escaped", "/tmp/abs-escaped"])
def test_cifar_unsafe_archive_rejected(tmp_path, monkeypatch, member):
    url, md5 = make_tarball(tmp_path, extra_member=member)
    monkeypatch.setattr(cifar, "CIFAR10_URLS", [url])
    monkeypatch.setattr(cifar, "CIFAR10_MD5", md5)
    with pytest.raises(BpcompileError, match="Refusing to extract"):
        load_dataset(CIFAR10())
    assert not (cache(tmp_path) / "escaped").exists() and not Path("/tmp/abs-escaped").exists()
    assert list((cache(tmp_path) / "cifar10").iterdir()) == []


def test_download_helper_leaves_no_partial_file(tmp_path):
    src = tmp_path / "blob"
    src.write_bytes(b"x" * 1000)
    dest = tmp_path / "out" / "blob"
    with pytest.raises(download.DownloadError):
        download.download([src.as_uri()], dest, "f" * 32)
    assert list(dest.parent.iterdir()) == []
    download.download([src.as_uri()], dest, hashlib.md5(b"x" * 1000).hexdigest())
    assert dest.read_bytes() == b"x" * 1000


# ---------------------------------------------------------------- validation split


def test_validation_split():
    spec = Synthetic(input_shape=[3], train_size=100, test_size=10, validation_size=30)
    s = load_dataset(spec, seed=1)
    full = load_dataset(spec.model_copy(update={"validation_size": 0}))
    assert s.train_x.shape == (70, 3) and s.val_x.shape == (30, 3) and s.val_y.shape == (30,)
    rows = lambda x: {tuple(r.tolist()) for r in x}  # noqa: E731 - N(0,1) rows are all distinct
    assert rows(s.train_x).isdisjoint(rows(s.val_x))
    assert rows(s.train_x) | rows(s.val_x) == rows(full.train_x)
    assert torch.equal(load_dataset(spec, seed=1).val_x, s.val_x)
    assert not torch.equal(load_dataset(spec, seed=2).val_x, s.val_x)
    assert torch.equal(s.test_x, full.test_x)
    # Statistics of the part left to train on, not of the full training set.
    assert torch.allclose(s.mean, s.train_x.double().mean().float().reshape(1), atol=1e-6)
    assert not torch.allclose(s.mean, full.mean, atol=1e-6)


def test_validation_split_images(tmp_path):
    write_mnist_dir(tmp_path / "m", 0, n_train=10)
    s = load_dataset(MNIST(download=False, validation_size=3), data_dir=str(tmp_path / "m"), seed=0)
    assert len(s.train_x) == 7 and len(s.val_x) == 3
    assert sorted(s.train_y.tolist() + s.val_y.tolist()) == list(range(10))


@pytest.mark.parametrize("size", [100, 1000])
def test_validation_too_big(size):
    with pytest.raises(BpcompileError, match="data.validation_size"):
        load_dataset(Synthetic(train_size=100, validation_size=size))


# ---------------------------------------------------------------- synthetic


def test_synthetic():
    spec = Synthetic(input_shape=[2, 5, 5], num_classes=4, train_size=300, test_size=50, data_seed=7)
    s = load_dataset(spec)
    assert s.name == "synthetic" and s.input_shape == (2, 5, 5) and s.num_classes == 4
    assert s.train_x.shape == (300, 2, 5, 5) and s.train_x.dtype == torch.float32
    assert s.test_x.shape == (50, 2, 5, 5) and s.train_y.dtype == torch.int64
    assert s.mean.shape == (2,) and s.std.shape == (2,) and torch.allclose(s.std, torch.ones(2), atol=0.1)
    assert set(s.train_y.tolist()) == {0, 1, 2, 3}
    again = load_dataset(spec, seed=99)  # the run seed does not matter, data_seed does
    assert torch.equal(again.train_x, s.train_x) and torch.equal(again.test_y, s.test_y)
    other = load_dataset(spec.model_copy(update={"data_seed": 8}))
    assert not torch.equal(other.train_x, s.train_x)
    bigger = load_dataset(spec.model_copy(update={"train_size": 400}))
    assert torch.equal(bigger.test_x, s.test_x) and torch.equal(bigger.test_y, s.test_y)


def test_synthetic_is_learnable():
    s = load_dataset(Synthetic(input_shape=[20], num_classes=10, train_size=2048, test_size=512))
    assert torch.bincount(s.train_y, minlength=10).min() > 50  # no class starved

    def feats(x):
        return torch.cat([x, torch.ones(len(x), 1)], 1)

    w = torch.linalg.lstsq(feats(s.train_x), torch.nn.functional.one_hot(s.train_y, 10).float()).solution
    acc = (feats(s.test_x) @ w).argmax(1).eq(s.test_y).float().mean()
    assert acc > 0.5  # chance is 0.1; even a linear fit does well


def test_random_batch():
    x, y = random_batch((3, 4, 4), 5, 16, torch.Generator().manual_seed(0))
    assert x.shape == (16, 3, 4, 4) and x.dtype == torch.float32 and y.shape == (16,) and y.dtype == torch.int64
    assert 0 <= int(y.min()) and int(y.max()) < 5
    x2, y2 = random_batch((3, 4, 4), 5, 16, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2) and torch.equal(y, y2)


# ---------------------------------------------------------------- BatchLoader


def coded_set(n, c=1, h=6, w=6):
    """uint8 images whose every pixel varies, plus labels 0..n-1 identifying each example."""
    g = torch.Generator().manual_seed(n)
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g), torch.arange(n)


def make_loader(x, y, **kw):
    args = dict(batch_size=4, device=torch.device("cpu"), shuffle=True, seed=0, normalize="unit")
    args.update(kw)
    return BatchLoader(x, y, **args)


def labels_of(loader, epoch):
    return [yb.tolist() for _, yb in loader.epoch(epoch)]


def test_loader_covers_each_example_once_with_partial_batch():
    x, y = coded_set(10)
    loader = make_loader(x, y)
    assert len(loader) == 3
    batches = list(loader.epoch(0))
    assert [len(yb) for _, yb in batches] == [4, 4, 2]
    assert sorted(sum((yb.tolist() for _, yb in batches), [])) == list(range(10))
    for xb, yb in batches:
        assert xb.dtype == torch.float32 and yb.dtype == torch.int64 and xb.device.type == "cpu"
        assert torch.equal(xb, x[yb].float() / 255)  # each input travels with its own label


def test_loader_order_depends_only_on_seed_and_epoch():
    x, y = coded_set(40)
    a, b = make_loader(x, y), make_loader(x, y)
    for e in range(3):
        list(a.epoch(e))
    assert labels_of(a, 3) == labels_of(b, 3)  # resumed at epoch 3 == uninterrupted
    assert labels_of(b, 0) != labels_of(b, 1)
    assert labels_of(make_loader(x, y, seed=1), 0) != labels_of(b, 0)
    assert sum(labels_of(make_loader(x, y, shuffle=False), 5), []) == list(range(40))


def test_loader_max_batches():
    x, y = coded_set(10)
    capped = make_loader(x, y, max_batches=2)
    assert len(capped) == 2 and labels_of(capped, 4) == labels_of(make_loader(x, y), 4)[:2]
    assert len(make_loader(x, y, max_batches=50)) == 3


def test_loader_normalisation_values():
    x, y = coded_set(5, c=3)
    mean, std = torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.2, 0.3, 0.4])
    loader = make_loader(x, y, normalize="standardize", mean=mean, std=std, batch_size=5, shuffle=False)
    xb, _ = next(loader.epoch(0))
    expected = (x.float() / 255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    assert torch.allclose(xb, expected, atol=1e-6)
    assert abs(float(xb[0, 2, 0, 0]) - ((int(x[0, 2, 0, 0]) / 255 - 0.9) / 0.4)) < 1e-5
    # Without given statistics the loader standardises with its own data's.
    xb, _ = next(make_loader(x, y, normalize="standardize", batch_size=5).epoch(0))
    assert torch.allclose(xb.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(xb.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


def test_loader_float_inputs_standardised():
    x = torch.randn(8, 4) * 3 + 2
    mean, std = torch.tensor([2.0]), torch.tensor([3.0])
    xb, _ = next(make_loader(x, torch.zeros(8, dtype=torch.long), normalize="standardize", mean=mean, std=std,
                             batch_size=8, shuffle=False).epoch(0))
    assert torch.allclose(xb, (x - 2) / 3)
    xb, _ = next(make_loader(x, torch.zeros(8, dtype=torch.long), batch_size=8, shuffle=False).epoch(0))
    assert torch.equal(xb, x)  # 'unit' leaves float inputs as they are


def test_loader_hflip():
    x, y = coded_set(64, c=2)
    loader = make_loader(x, y, augment=["hflip"], batch_size=16)
    flipped = kept = 0
    for xb, yb in loader.epoch(0):
        orig = x[yb].float() / 255
        same = (xb == orig).flatten(1).all(1)
        flip = (xb == orig.flip(-1)).flatten(1).all(1)
        assert bool((same | flip).all())
        flipped, kept = flipped + int(flip.sum()), kept + int(same.sum())
    assert flipped > 10 and kept > 10
    again = [xb for xb, _ in make_loader(x, y, augment=["hflip"], batch_size=16).epoch(0)]
    assert all(torch.equal(a, b) for a, b in zip(again, [xb for xb, _ in loader.epoch(0)]))


def shifted(img, dy, dx):
    """img moved down by dy and right by dx, zero filled (what a padded crop at offset 4-dy, 4-dx gives)."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def test_loader_crop():
    x, y = coded_set(32, c=3, h=10, w=12)
    x = x.clamp(min=1)  # no zero pixels, so the zero padding is recognisable
    loader = make_loader(x, y, augment=["crop"], batch_size=8)
    moved = 0
    for xb, yb in loader.epoch(2):
        assert xb.shape == (len(yb), 3, 10, 12)
        for img, label in zip(xb, yb):
            orig = x[label].float() / 255
            shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5) if torch.equal(img, shifted(orig, dy, dx))]
            assert len(shifts) == 1
            moved += shifts[0] != (0, 0)
    assert moved > 20


def test_crop_and_hflip_functions_at_known_offsets():
    from bpcompile.data.loader import crop, hflip

    x = torch.arange(2 * 1 * 10 * 10, dtype=torch.float32).reshape(2, 1, 10, 10) + 1
    out = crop(x, torch.tensor([4, 0]), torch.tensor([4, 8]))  # image 0 centred, image 1 top-right of the pad
    assert torch.equal(out[0], x[0])
    assert torch.equal(out[1], shifted(x[1], 4, -4))  # content moves 4 down, 4 left
    out = hflip(x, torch.tensor([True, False]))
    assert torch.equal(out[0, 0, :, 0], x[0, 0, :, 9]) and torch.equal(out[1], x[1])


def test_loader_device_resident_modes_agree():
    x, y = coded_set(20, c=3)
    kw = dict(augment=["crop", "hflip"], normalize="standardize", seed=3)
    outs = []
    for mode in ("always", "never", "auto"):
        loader = make_loader(x, y, device_resident=mode, **kw)
        assert loader.resident == (mode != "never")
        outs.append([(xb, yb) for xb, yb in loader.epoch(1)])
    for other in outs[1:]:
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(outs[0], other))


def test_loader_rejects_bad_augment():
    with pytest.raises(BpcompileError, match="data.augment"):
        make_loader(torch.randn(4, 10), torch.zeros(4, dtype=torch.long), augment=["crop"])
    with pytest.raises(BpcompileError, match="data.augment"):
        make_loader(*coded_set(4), augment=["rotate"])


def test_mnist_and_fashion_mnist_files_are_not_mixed_up(tmp_path):
    """Same file names: the full training labels (6000 per class only in Fashion-MNIST) tell them apart."""
    from bpcompile.data.mnist import check_identity
    from bpcompile.errors import BpcompileError

    fashion_like = torch.arange(10).repeat_interleave(6000)
    mnist_like = fashion_like.clone()
    mnist_like[:100] = 1                       # unbalanced, as MNIST's real counts are
    check_identity("fashion_mnist", fashion_like, tmp_path)
    check_identity("mnist", mnist_like, tmp_path)
    with pytest.raises(BpcompileError, match="asks for MNIST, but the IDX files found in .* are Fashion-MNIST"):
        check_identity("mnist", fashion_like, tmp_path)
    with pytest.raises(BpcompileError, match="asks for Fashion-MNIST, but .* are MNIST"):
        check_identity("fashion_mnist", mnist_like, tmp_path)
    check_identity("mnist", fashion_like[:600], tmp_path)   # small (test-written) files: no check


def test_mnist_resized_to_32():
    """data.image_size: bilinear with half-pixel centres, rounded to 8 bits (torchvision's Resize on a PIL image);
    a hand-worked row [0, 255] -> [0, 64, 191, 255], shapes and data_shapes follow."""
    from bpcompile.data import load_dataset, resize_images
    from bpcompile.spec import data_shapes

    image = torch.tensor([[0, 255], [0, 255]], dtype=torch.uint8).reshape(1, 1, 2, 2)
    out = resize_images(image, 4)
    assert out.dtype == torch.uint8
    assert out[0, 0].tolist() == [[0, 64, 191, 255]] * 4
    constant = torch.full((3, 1, 28, 28), 77, dtype=torch.uint8)
    assert torch.equal(resize_images(constant, 32), torch.full((3, 1, 32, 32), 77, dtype=torch.uint8))
    spec = MNIST(subset="embedded", image_size=32)
    splits = load_dataset(spec)
    assert splits.train_x.shape[1:] == (1, 32, 32) and splits.input_shape == (1, 32, 32)
    assert data_shapes(spec) == ((1, 32, 32), 10)
    assert "resized to 32x32" in splits.source
