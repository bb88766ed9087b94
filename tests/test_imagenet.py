"""Tests of the ImageNet class-folder pipeline: listing, search order, errors, transforms checked against
Pillow by hand, reproducibility across epochs / resumes / worker counts, loaders, and a CLI run.

Every image is tiny and written by the tests into tmp_path."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bpcompile.data import ImageFolderLoader, ImageFolderSplits, load_dataset, make_loaders
from bpcompile.data.imagenet import Transform, random_resized_crop_box
from bpcompile.data.seeding import generator
from bpcompile.errors import BpcompileError
from bpcompile.spec import ImageNet, spec_from_dict

SIZES = [(40, 30), (25, 50), (33, 33), (50, 21), (28, 44), (21, 37)]  # (width, height), varied on purpose
S, R = 16, 20  # image_size, resize_size


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("BPCOMPILE_DATA", raising=False)


def wnid(c: int) -> str:
    return f"n{c:08d}"


def write_image(path: Path, size, seed: int) -> None:
    """Noise (so every crop and flip is distinguishable), saved as JPEG or PNG by the suffix."""
    w, h = size
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **({} if path.suffix.lower() == ".png" else {"format": "JPEG", "quality": 95}))


def write_tree(root: Path, classes: int = 3, train=(5, 4, 6), val: int = 2) -> Path:
    """ROOT/train/<wnid>/ and ROOT/val/<wnid>/ with mixed extensions, one PNG and one file that is no image."""
    seed = 0
    for c in range(classes):
        for k in range(train[c % len(train)]):
            suffix = [".JPEG", ".jpg", ".jpeg", ".JPEG", ".JPEG", ".JPEG"][k]
            if c == 0 and k == 1:
                suffix = ".PNG"
            write_image(root / "train" / wnid(c) / f"{wnid(c)}_{k}{suffix}", SIZES[(c + k) % len(SIZES)], seed)
            seed += 1
        for k in range(val):
            write_image(root / "val" / wnid(c) / f"ILSVRC2012_val_{c}{k}.JPEG", SIZES[(c + k + 3) % len(SIZES)], seed)
            seed += 1
    (root / "train" / wnid(0) / "README.txt").write_text("not an image")
    return root


def spec(**kw) -> ImageNet:
    args = dict(image_size=S, resize_size=R, num_classes=3, workers=0, batch_size=4, eval_batch_size=4)
    args.update(kw)
    return ImageNet(**args)


def make_loader(samples, **kw) -> ImageFolderLoader:
    args = dict(batch_size=4, device=torch.device("cpu"), seed=0, image_size=S, resize_size=R, normalize="unit")
    args.update(kw)
    return ImageFolderLoader(samples, **args)


def pil_eval(path) -> Image.Image:
    """Resize the short side to R (long side rounded down), bilinear; centre crop S: done by hand with Pillow."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    size = (R, int(R * h / w)) if w <= h else (int(R * w / h), R)
    img = img.resize(size, Image.BILINEAR)
    left, top = round((size[0] - S) / 2), round((size[1] - S) / 2)
    return img.crop((left, top, left + S, top + S))


def as_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255


def all_batches(loader, epoch):
    xs, ys = zip(*loader.epoch(epoch))
    return torch.cat(xs), torch.cat(ys)


@pytest.fixture
def root(tmp_path) -> Path:
    return write_tree(tmp_path / "data")


# ---------------------------------------------------------------- listing and search


def test_listing_classes_and_labels(root):
    s = load_dataset(spec(), data_dir=str(root))
    assert isinstance(s, ImageFolderSplits) and s.name == "imagenet"
    assert s.classes == [wnid(0), wnid(1), wnid(2)] and s.num_classes == 3 and s.input_shape == (3, S, S)
    assert len(s.train) == 15 and len(s.test) == 6 and s.val is None
    for path, label in s.train + s.test:
        assert Path(path).parent.name == s.classes[label]
    names = [Path(p).name for p, _ in s.train]
    assert f"{wnid(0)}_1.PNG" in names and f"{wnid(1)}_1.jpg" in names and "README.txt" not in names
    assert [label for _, label in s.train] == [0] * 5 + [1] * 4 + [2] * 6
    assert str(root) in s.source
    assert s.mean.dtype == torch.float32 and torch.allclose(s.mean, torch.tensor([0.485, 0.456, 0.406]))
    assert torch.allclose(s.std, torch.tensor([0.229, 0.224, 0.225]))


@pytest.mark.parametrize("sub", ["imagenet", "ILSVRC2012", "imagenet/ILSVRC2012"])
def test_subfolders_of_each_root(tmp_path, monkeypatch, sub):
    write_tree(tmp_path / "cli" / sub, train=(1,), val=1)
    assert str(tmp_path / "cli" / sub) in load_dataset(spec(), data_dir=str(tmp_path / "cli")).source
    s = load_dataset(spec(dir=str(tmp_path / "cli")), data_dir=str(tmp_path / "nothing"))
    assert str(tmp_path / "cli" / sub) in s.source
    monkeypatch.setenv("BPCOMPILE_DATA", str(tmp_path / "cli"))
    assert str(tmp_path / "cli" / sub) in load_dataset(spec()).source


def test_not_found_names_places_layout_and_licence(tmp_path, monkeypatch):
    half = tmp_path / "half"
    (half / "train" / wnid(0)).mkdir(parents=True)  # train/ without val/
    monkeypatch.setenv("BPCOMPILE_DATA", str(tmp_path / "env"))
    with pytest.raises(BpcompileError) as e:
        load_dataset(spec(dir=str(tmp_path / "specdir")), data_dir=str(half))
    msg = str(e.value)
    cache = tmp_path / "xdg" / "bpcompile"
    for d in [half, half / "imagenet", half / "ILSVRC2012", half / "imagenet" / "ILSVRC2012", tmp_path / "specdir",
              tmp_path / "env", cache, cache / "imagenet"]:
        assert str(d) in msg
    assert f"{half} has train but lacks val" in msg
    assert "image-net.org" in msg and "train/<wnid>" in msg and "val/<wnid>" in msg
    assert "--data-dir" in msg and "BPCOMPILE_DATA" in msg and "data.dir" in msg and "\n" not in msg


def test_val_folder_that_is_no_train_class(root):
    write_image(root / "val" / "n99999999" / "x.JPEG", (20, 20), 0)
    with pytest.raises(BpcompileError) as e:
        load_dataset(spec(), data_dir=str(root))
    assert str(root / "val" / "n99999999") in str(e.value) and "train/" in str(e.value)


def test_unsorted_val_folder(tmp_path):
    root = write_tree(tmp_path / "d", val=0)  # no val/<wnid>/ folders
    write_image(root / "val" / "ILSVRC2012_val_00000001.JPEG", (20, 20), 0)
    with pytest.raises(BpcompileError, match="holds 1 images directly: sort them into val/<wnid>/"):
        load_dataset(spec(), data_dir=str(root))


def test_class_count_and_sizes_checked(root):
    with pytest.raises(BpcompileError, match="data.num_classes=1000, but .* holds 3 class folders"):
        load_dataset(spec(num_classes=1000), data_dir=str(root))
    with pytest.raises(BpcompileError, match="data.resize_size=12 is smaller than data.image_size=16"):
        load_dataset(spec(resize_size=12), data_dir=str(root))
    (root / "train" / "n00000009").mkdir()
    with pytest.raises(BpcompileError) as e:
        load_dataset(spec(num_classes=4), data_dir=str(root))
    assert str(root / "train" / "n00000009") in str(e.value) and "holds no images" in str(e.value)


def test_validation_hold_out(root):
    full = load_dataset(spec(), data_dir=str(root))
    s = load_dataset(spec(validation_size=4), data_dir=str(root), seed=3)
    assert len(s.train) == 11 and len(s.val) == 4 and s.test == full.test
    assert set(s.train).isdisjoint(s.val) and set(s.train) | set(s.val) == set(full.train)
    perm = torch.randperm(15, generator=torch.Generator().manual_seed(3))  # splits.hold_out's semantics
    assert s.val == [full.train[i] for i in sorted(perm[11:].tolist())]
    assert s.train == [full.train[i] for i in sorted(perm[:11].tolist())]  # original order kept
    assert load_dataset(spec(validation_size=4), data_dir=str(root), seed=4).val != s.val
    with pytest.raises(BpcompileError, match="data.validation_size=15"):
        load_dataset(spec(validation_size=15), data_dir=str(root))


# ---------------------------------------------------------------- transforms


def test_eval_transform_is_resize_then_centre_crop(root):
    s = load_dataset(spec(), data_dir=str(root))
    x, y = all_batches(make_loader(s.train + s.test), 0)
    assert x.shape == (21, 3, S, S) and x.dtype == torch.float32 and y.tolist() == [l for _, l in s.train + s.test]
    for xi, (path, _) in zip(x, s.train + s.test):
        assert torch.equal(xi, as_tensor(pil_eval(path)))
    # The first image is 40x30: short side 30 -> 20 gives 26x20, centre 16x16 starts at (5, 2).
    path = s.train[0][0]
    assert Image.open(path).size == (40, 30)
    by_hand = Image.open(path).convert("RGB").resize((26, 20), Image.BILINEAR).crop((5, 2, 21, 18))
    assert torch.equal(x[0], as_tensor(by_hand))


def test_normalisation_uses_imagenet_constants(root):
    s = load_dataset(spec(), data_dir=str(root))
    unit, _ = all_batches(make_loader(s.test), 0)
    std, _ = all_batches(make_loader(s.test, normalize="standardize", mean=s.mean, std=s.std), 0)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    assert torch.allclose(std, (unit - mean) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), atol=1e-6)
    default, _ = all_batches(make_loader(s.test, normalize="standardize"), 0)  # the constants are the default
    assert torch.equal(default, std)


def test_epoch_order_is_the_seeded_permutation(root):
    s = load_dataset(spec(), data_dir=str(root))
    loader = make_loader(s.train, shuffle=True, seed=5)
    for e in range(2):
        x, y = all_batches(loader, e)
        perm = torch.randperm(15, generator=generator(5, e)).tolist()
        assert y.tolist() == [s.train[i][1] for i in perm]
        assert torch.equal(x[3], as_tensor(pil_eval(s.train[perm[3]][0])))


def test_hflip_mirrors_half_the_time(root):
    s = load_dataset(spec(), data_dir=str(root))
    loader = make_loader(s.train, augment=["hflip"])
    flipped = kept = 0
    for e in range(4):
        x, _ = all_batches(loader, e)
        for xi, (path, _) in zip(x, s.train):
            plain = pil_eval(path)
            mirror = as_tensor(plain.transpose(Image.FLIP_LEFT_RIGHT))
            assert torch.equal(xi, as_tensor(plain)) or torch.equal(xi, mirror)
            flipped += torch.equal(xi, mirror)
            kept += torch.equal(xi, as_tensor(plain))
    assert flipped > 10 and kept > 10 and flipped + kept == 60


def test_crop_is_a_window_of_the_resized_image(root):
    s = load_dataset(spec(), data_dir=str(root))
    x, _ = all_batches(make_loader(s.train, augment=["crop"]), 1)
    offsets = set()
    for xi, (path, _) in zip(x, s.train):
        img = Image.open(path).convert("RGB")
        w, h = img.size
        big = as_tensor(img.resize((R, int(R * h / w)) if w <= h else (int(R * w / h), R), Image.BILINEAR))
        hits = [(i, j) for i in range(big.shape[1] - S + 1) for j in range(big.shape[2] - S + 1)
                if torch.equal(xi, big[:, i:i + S, j:j + S])]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 5


def test_random_resized_crop_box_ranges_and_fallback():
    for i in range(500):
        left, top, w, h = random_resized_crop_box(200, 150, random.Random(i))
        assert 0 <= left and left + w <= 200 and 0 <= top and top + h <= 150
        assert 0.08 * 30000 * 0.95 <= w * h <= 30000
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1

    class Always:  # every attempt asks for ~the whole area at ratio 4/3, which a 100x5 strip cannot hold
        def random(self):
            return 0.999

    assert random_resized_crop_box(100, 5, Always()) == (46, 0, 7, 5)  # ratio clamped to 4/3, centred
    assert random_resized_crop_box(5, 100, Always()) == (0, 46, 5, 7)  # clamped to 3/4
    assert random_resized_crop_box(30, 30, Always()) == (0, 0, 30, 30)  # ratio 1 is in range: the whole image


def test_random_resized_crop_is_that_box_resized():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 52, 3), dtype=np.uint8))
    out = Transform(S, R, ("random_resized_crop",))(img, random.Random(7))
    left, top, w, h = random_resized_crop_box(52, 37, random.Random(7))
    assert (w, h) != (52, 37)
    expected = img.crop((left, top, left + w, top + h)).resize((S, S), Image.BILINEAR)
    assert np.array_equal(np.array(out), np.array(expected))


def test_training_crops_reproducible_per_seed_and_epoch_whatever_the_workers(root):
    s = load_dataset(spec(), data_dir=str(root))
    kw = dict(shuffle=True, augment=["random_resized_crop", "hflip"], seed=2)
    a = make_loader(s.train, **kw)
    e0, e1 = all_batches(a, 0), all_batches(a, 1)
    assert e0[0].shape == (15, 3, S, S)
    resumed = make_loader(s.train, **kw)  # a fresh loader starting at epoch 1, as a resumed run does
    assert torch.equal(all_batches(resumed, 1)[0], e1[0])
    assert torch.equal(all_batches(a, 0)[0], e0[0])
    two = make_loader(s.train, workers=2, **kw)
    for e, (x, y) in enumerate([e0, e1]):
        x2, y2 = all_batches(two, e)
        assert torch.equal(x, x2) and torch.equal(y, y2)
    # Same sample, different epochs: different crops.
    fixed = make_loader(s.train, augment=["random_resized_crop"], seed=2)
    x0, x1 = all_batches(fixed, 0)[0], all_batches(fixed, 1)[0]
    assert sum(not torch.equal(p, q) for p, q in zip(x0, x1)) >= 13
    assert not torch.equal(all_batches(make_loader(s.train, augment=["random_resized_crop"], seed=3), 0)[0], x0)


def test_max_batches_and_partial_batch(root):
    s = load_dataset(spec(), data_dir=str(root))
    full = make_loader(s.train, shuffle=True)
    assert len(full) == 4 and [len(y) for _, y in full.epoch(0)] == [4, 4, 4, 3]
    capped = make_loader(s.train, shuffle=True, max_batches=2)
    assert len(capped) == 2
    assert [y.tolist() for _, y in capped.epoch(3)] == [y.tolist() for _, y in full.epoch(3)][:2]


def test_augment_conflict_rejected(root):
    with pytest.raises(BpcompileError, match="both 'crop' and 'random_resized_crop'"):
        make_loader([], augment=["crop", "random_resized_crop"])


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_image_names_the_file(root, workers):
    bad = root / "train" / wnid(1) / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is no JPEG")
    s = load_dataset(spec(), data_dir=str(root))
    with pytest.raises(BpcompileError) as e:
        all_batches(make_loader(s.train, workers=workers), 0)
    msg = str(e.value)
    assert str(bad) in msg and "could not read the image" in msg and "Traceback" not in msg and "\n" not in msg


# ---------------------------------------------------------------- make_loaders, CLI


def experiment(classes: int, **data) -> dict:
    return {
        "name": "tiny_imagenet",
        "data": {"name": "imagenet", "image_size": S, "resize_size": R, "workers": 0, "batch_size": 4,
                 "eval_batch_size": 4, "num_classes": classes, **data},
        "network": {"layers": [
            {"type": "conv2d", "name": "conv1", "channels": 4, "kernel": 3, "stride": 2},
            {"type": "activation", "fn": "relu"}, {"type": "global_avg_pool"},
            {"type": "dense", "name": "out", "units": classes}]},
        "rule": {"name": "bp"}, "optimizer": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 1, "seed": 0, "device": "cpu"},
    }


def test_make_loaders(root):
    raw = experiment(3, validation_size=3, augment=["random_resized_crop", "hflip"])
    raw["train"].update(train_error="full", max_steps_per_epoch=2)
    exp = spec_from_dict(raw)
    s = load_dataset(exp.data, data_dir=str(root), seed=0)
    loaders = make_loaders(exp, s, torch.device("cpu"), probe_size=5)
    assert set(loaders) == {"train", "test", "val", "train_eval", "probe"}
    assert len(loaders["train"]) == 2 and len(loaders["train_eval"]) == 3 and len(loaders["val"]) == 1
    assert len(loaders["test"]) == 2
    probe = list(loaders["probe"].epoch(0))
    assert len(probe) == 1 and probe[0][1].tolist() == [label for _, label in s.train[:5]]
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    for xi, (path, _) in zip(probe[0][0], s.train[:5]):  # eval transform, standardised
        assert torch.allclose(xi, (as_tensor(pil_eval(path)) - mean) / std, atol=1e-6)
    x, y = all_batches(loaders["train_eval"], 0)
    assert y.tolist() == [label for _, label in s.train]


def test_cli_run_one_epoch(tmp_path):
    from bpcompile.cli import app

    root = write_tree(tmp_path / "data", classes=6, train=(2, 3), val=1)
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(experiment(6)))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(path), "--data-dir", str(root), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    assert last["epoch"] == 1 and "test_error" in last and "test_top5_error" not in last      # 6 classes
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and str(root) in summary["data_source"]
