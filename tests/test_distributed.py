"""Several processes (torchrun, gloo on CPU) against one process.

Two ranks with global batch B must take the same steps as one process with batch B: the same parameters, batch
statistics and rule state (feedback tensors, inverses) after a few epochs, to 1e-5, identical on both ranks, with
one metrics line per epoch written by rank 0 only. Each case starts real processes with torch.distributed.run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from plain_nets import rel_error

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).parent / "dist_worker.py"
TOL = 1e-5
# what a rank prints when gloo's C++ threads call std::terminate (pytorch/pytorch#190489, #179291)
GLOO_ABORT = "terminate called without an active exception"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}

RULES = {
    "bp": {"name": "bp"},
    "fa": {"name": "fa"},
    "kolen_pollack": {"name": "kolen_pollack", "weight_decay": 0.01},
    "weight_mirror": {"name": "weight_mirror", "mirror": {"lr": 0.05, "batch_size": 4, "pre_batches": 2}},
    "dtp": {"name": "dtp", "schedule": "parallel"},
    "dtp_alternating": {"name": "dtp", "schedule": "alternating"},
    # turns over blocks of 3 batches: the last block holds the short last batch
    "sdtp_alternating_blocks": {"name": "sdtp", "schedule": "alternating",
                                "alternation": {"block_batches": 3, "inverse_passes": 2}},
    # a plug-in (examples/rules/): loaded by every process; its hook's redraws stay in step across ranks
    "fa_redrawn": {"name": "fa_redrawn", "every": 4},
    "dfa": {"name": "dfa"},
    "brsf": {"name": "sign_symmetry", "variant": "brsf"},           # magnitudes redrawn alike on every rank
    "direct_kolen_pollack": {"name": "feedback", "source": "learned", "learning": "kolen_pollack",
                             "topology": "direct"},
    "tp": {"name": "tp", "schedule": "parallel"},
    "ao_sdtp": {"name": "ao_sdtp", "schedule": "parallel", "aux_units": 5},
}
# every registered rule takes the single-process steps (tests/test_rule_conformance.py checks the coverage)
PLUGINS = {"fa_redrawn": ROOT / "examples" / "rules" / "fa_redrawn.py"}


def write_spec(tmp_path, rule, epochs=2, optimizer=None):
    spec = {
        "name": "dist",
        # 50 training examples in global batches of 8: six full batches and a last one of 2 (one per rank)
        "data": {"name": "synthetic", "input_shape": [1, 6, 6], "num_classes": 3, "train_size": 50, "test_size": 21,
                 "batch_size": 8, "eval_batch_size": 10, "augment": []},
        "network": {"layers": [
            {"type": "locally_connected", "name": "lc1", "channels": 3, "kernel": 3, "stride": 2},
            {"type": "activation", "fn": "tanh"},
            {"type": "flatten"},
            {"type": "dense", "name": "fc1", "units": 6},
            {"type": "activation", "fn": "tanh"},
            {"type": "dense", "name": "out", "units": 3},
        ]},
        "rule": rule,
        "optimizer": optimizer or {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"epochs": epochs, "seed": 3},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def launch(nproc, spec, out, resume=False, plugin=None):
    if nproc == 1:
        cmd = [sys.executable, str(WORKER), str(spec), str(out)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(WORKER), str(spec), str(out)]
    extra = (["--resume"] if resume else []) + (["--plugin", str(plugin)] if plugin else [])
    for attempt in range(2):
        result = subprocess.run(cmd + extra, capture_output=True, text=True, env=ENV,
                                cwd=ROOT, timeout=300)
        if not (nproc > 1 and result.returncode and GLOO_ABORT in result.stderr and not resume):
            break
        # a rank's gloo threads aborted the process (seen now and then in CI, never in 130 local
        # launches): start the whole launch again from scratch, once; a second abort fails the test
        shutil.rmtree(out, ignore_errors=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return torch.load(Path(out) / "ranks.pt", weights_only=False)


def metrics(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def assert_same_training(single, ranks):
    (one,) = single
    for rank in ranks[1:]:                        # every rank holds the same tensors
        for name, value in rank.items():
            assert torch.equal(value, ranks[0][name]), name
    for name, value in one.items():               # ... and they are the single process's
        if value.is_floating_point():
            assert rel_error(ranks[0][name], value) <= TOL, name
        else:
            assert torch.equal(ranks[0][name], value), name


@pytest.mark.parametrize("rule", list(RULES))
def test_two_processes_take_the_single_process_steps(tmp_path, rule):
    spec = write_spec(tmp_path, RULES[rule])
    single = launch(1, spec, tmp_path / "one", plugin=PLUGINS.get(rule))
    ranks = launch(2, spec, tmp_path / "two", plugin=PLUGINS.get(rule))
    assert_same_training(single, ranks)
    assert any(k.startswith("state:") for k in single[0]) == (rule != "bp")
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [r["epoch"] for r in two] == [0, 1, 2]            # rank 0 alone writes: one line per epoch
    for a, b in zip(one[1:], two[1:]):
        assert b["test_error"] == a["test_error"]
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["train_error"] == pytest.approx(a["train_error"])


def test_resume_under_torchrun_continues_exactly(tmp_path):
    spec_one = write_spec(tmp_path, RULES["kolen_pollack"], epochs=2, optimizer={"name": "adam", "lr": 0.01})
    single = launch(1, spec_one, tmp_path / "one")
    spec_short = write_spec(tmp_path / "short", RULES["kolen_pollack"], epochs=1, optimizer={"name": "adam", "lr": 0.01}) \
        if (tmp_path / "short").mkdir() is None else None
    launch(2, spec_short, tmp_path / "two")
    ranks = launch(2, spec_one, tmp_path / "two", resume=True)     # the given spec may raise train.epochs
    assert_same_training(single, ranks)
    assert [r["epoch"] for r in metrics(tmp_path / "two")] == [0, 1, 2]


def test_batch_norm_statistics_are_averaged_over_ranks(tmp_path):
    """Each rank's batch norm sees its shard; after an epoch every rank holds the ranks' mean statistics."""
    spec = json.loads(write_spec(tmp_path, RULES["fa"], epochs=1).read_text())
    spec["network"]["layers"].insert(1, {"type": "batch_norm", "name": "bn"})
    path = tmp_path / "bn.json"
    path.write_text(json.dumps(spec))
    ranks = launch(2, path, tmp_path / "two")
    assert torch.equal(ranks[0]["buffer:bn.running_mean"], ranks[1]["buffer:bn.running_mean"])
    assert int(ranks[0]["buffer:bn.num_batches_tracked"]) == 7        # 7 global batches, one update each


# ---- sharded loaders (no processes needed) -------------------------------------------------------------

def _shard_batches(make, world, epoch):
    """Per global batch, the concatenation of every rank's chunk."""
    from bpcompile.data import Shard

    per_rank = [list(make(Shard(rank, world)).epoch(epoch)) for rank in range(world)]
    batches = []
    for chunks in zip(*per_rank):
        batches.append((torch.cat([x for x, _ in chunks]), torch.cat([y for _, y in chunks])))
    return batches, per_rank


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranks_chunks_reassemble_the_single_process_batches(world):
    """Order, flips and crops of each global batch are the single process's, split in contiguous chunks; a last
    training batch smaller than the world is dropped, evaluation keeps every example."""
    from bpcompile.data import BatchLoader, Shard

    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 256, (23, 3, 8, 8), generator=g, dtype=torch.uint8), torch.arange(23)

    def make(shard, shuffle=True):
        return BatchLoader(x, y, batch_size=5, device="cpu", shuffle=shuffle, seed=4, augment=["hflip", "crop"],
                           shard=shard)

    single = list(make(Shard()).epoch(2))
    batches, per_rank = _shard_batches(make, world, 2)
    assert len(batches) == (5 if world <= 3 else 4)     # 23 = 4 x 5 + 3: the last 3 train only if 3 >= world
    for (xs, ys), (xb, yb) in zip(single, batches):
        assert torch.equal(xs, xb) and torch.equal(ys, yb)
    sizes = [len(chunk[1]) for chunk in per_rank[0]]
    assert sizes[0] == 5 // world + (1 if 5 % world else 0)
    _, evaluation = _shard_batches(lambda shard: make(shard, shuffle=False), world, 0)
    seen = torch.cat([yb for rank in evaluation for _, yb in rank])
    assert torch.equal(seen.sort().values, y)                          # evaluation: every example exactly once


def test_image_folder_shards_decode_only_their_chunk(tmp_path):
    from bpcompile.data import Shard
    from bpcompile.data.imagenet import ImageFolderLoader, load_imagenet
    from test_imagenet import spec, write_tree

    root = write_tree(tmp_path / "data")
    splits = load_imagenet(spec(), str(root), 0)

    def make(shard):
        return ImageFolderLoader(splits.train, batch_size=4, device="cpu", seed=1, image_size=8, resize_size=10,
                                 shuffle=True, augment=["random_resized_crop", "hflip"], shard=shard)

    single = list(make(Shard()).epoch(1))
    batches, per_rank = _shard_batches(make, 2, 1)
    assert len(single) == len(batches) == 4                              # 15 images: 3 x 4 + 3 (>= 2 ranks)
    for (xs, ys), (xb, yb) in zip(single, batches):
        assert torch.equal(xs, xb) and torch.equal(ys, yb)
    assert [len(y) for _, y in per_rank[1]] == [2, 2, 2, 1]
