"""A corpus of mutated specs through `bpcompile validate` and, when accepted, a one-step dry run.

Unlike tests/test_fuzz.py (hypothesis, shrinking), this draws a fixed corpus with `random.Random(seed)` from
every shipped spec, so the counts in README.md can be regenerated exactly:

    python results/hardening/corpus.py --count 1000 --seed 0            # in-process, ~10 min on 2 cores
    python results/hardening/corpus.py --count 50 --seed 1 --subprocess # real processes, real exit codes

It prints the outcome counts and every case that was not a clean answer (exit 0, or exit 2 with one paragraph
of at most 2,000 characters, no traceback), and writes results/hardening/corpus_<seed>.json.
"""

import argparse
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TRITON_INTERPRET", "1")

from spec_mutations import mutate  # noqa: E402

DRY_RUN_LIMIT_BYTES = 256 * 2**20


def shipped_specs() -> list[Path]:
    return sorted(p for p in (ROOT / "specs").rglob("*.json") if "spaces" not in p.parts and p.name != "schema.json")


def run_cli(args: list[str], use_subprocess: bool, cwd: str) -> tuple[int, str]:
    if use_subprocess:
        done = subprocess.run([sys.executable, "-m", "bpcompile", *args], capture_output=True, text=True, cwd=cwd,
                              timeout=300)
        return done.returncode, done.stdout + done.stderr
    from bpcompile.cli import main
    out, old = io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                main(args)
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
            except BaseException as err:   # a crash: record it as a traceback would show
                out.write(f"Traceback (in process): {type(err).__name__}: {err}")
                code = 1
    finally:
        os.chdir(old)
    return code, out.getvalue()


def clean(code: int, text: str) -> bool:
    return code in (0, 2) and "Traceback" not in text and (code == 0 or len(text) <= 2300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subprocess", action="store_true")
    args = parser.parse_args()
    from bpcompile.compiler import input_spec
    from bpcompile.nn.budget import estimate
    from bpcompile.spec import spec_from_dict

    rng = random.Random(args.seed)
    bases = shipped_specs()
    counts = {"validate_exit_0": 0, "validate_exit_2": 0, "dry_runs": 0, "not_clean": 0, "longest_message": 0}
    bad = []
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.count):
            base = rng.choice(bases)
            spec = json.loads(base.read_text())
            mutations = mutate(spec, rng.choice, rng.randint(1, 3))
            path = Path(tmp) / f"case{i}.json"
            path.write_text(json.dumps(spec))
            code, text = run_cli(["validate", str(path)], args.subprocess, tmp)
            counts["longest_message"] = max(counts["longest_message"], len(text))
            ok = clean(code, text)
            if code in (0, 2):
                counts[f"validate_exit_{code}"] += 1
            if ok and code == 0:
                parsed = spec_from_dict(spec)
                if parsed.data.name != "imagenet" and estimate(parsed, *input_spec(parsed)).bytes <= DRY_RUN_LIMIT_BYTES:
                    with tempfile.TemporaryDirectory() as cwd:
                        code, text = run_cli(["run", str(path), "--dry-run", "1", "--device", "cpu", "--no-progress"],
                                             args.subprocess, cwd)
                        ok = clean(code, text) and not os.listdir(cwd)
                    counts["dry_runs"] += 1
            if not ok:
                counts["not_clean"] += 1
                bad.append({"base": base.name, "mutations": mutations, "exit": code, "output": text[-1500:]})
                print(f"NOT CLEAN {base.name} {mutations}: exit {code}\n{text[-800:]}")
            if (i + 1) % 100 == 0:
                print(f"{i + 1}/{args.count} cases, {time.time() - started:.0f}s: {counts}", flush=True)
    record = {"count": args.count, "seed": args.seed, "subprocess": args.subprocess, **counts,
              "seconds": round(time.time() - started, 1), "not_clean_cases": bad}
    out = Path(__file__).with_name(f"corpus_{args.seed}{'_subprocess' if args.subprocess else ''}.json")
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "not_clean_cases"}))


if __name__ == "__main__":
    main()
