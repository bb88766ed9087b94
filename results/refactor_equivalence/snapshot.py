"""Losses of the first training steps of every shipped spec, to show a refactor changed no behaviour.

    python results/refactor_equivalence/snapshot.py --out results/refactor_equivalence/before.json
    python results/refactor_equivalence/snapshot.py --compare results/refactor_equivalence/before.json

Each spec runs `bpcompile run SPEC --dry-run 3` (random batches of the spec's shapes, fixed seed) with the batch
cut to 8 and weight mirror's mirror phases to one batch of 8, so every spec of specs/ fits in a few minutes on a
CPU. --compare exits 1 if any loss differs by more than 1e-5 (relative) from the saved run."""

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from bpcompile.console import make_console
from bpcompile.runtime.trainer import dry_run
from bpcompile.spec.io import load_spec

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = ["data.batch_size=8"]
MIRROR = ["rule.mirror.batch_size=8", "rule.mirror.pre_batches=1"]


def spec_paths() -> list[Path]:
    return sorted(p for p in (ROOT / "specs").rglob("*.json") if p.name != "schema.json" and "spaces" not in p.parts)


def losses_of(path: Path) -> list[float]:
    raw = json.loads(path.read_text())
    overrides = OVERRIDES + (MIRROR if raw.get("rule", {}).get("name") == "weight_mirror" else [])
    spec = load_spec(path, overrides)
    torch.manual_seed(0)
    return dry_run(spec, 3, device="cpu", console=make_console(quiet=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out")
    parser.add_argument("--compare")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for path in spec_paths():
        name = str(path.relative_to(ROOT))
        results[name] = losses_of(path)
        print(name, " ".join(f"{x:.6f}" for x in results[name]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    if args.compare:
        saved = json.loads(Path(args.compare).read_text())
        bad = [n for n in saved if n not in results or len(saved[n]) != len(results[n]) or not all(
            math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) for a, b in zip(saved[n], results[n]))]
        print(f"{len(saved) - len(bad)} of {len(saved)} specs take the same losses" + (f"; differ: {bad}" if bad else ""))
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
