"""Property-based hardening: hostile specs and `--set` paths through `validate` and a one-step dry run.

Whatever the mutation, the command ends with exit 0 (accepted) or 2 (one bounded
paragraph that names a field, file or layer), never a traceback, and a dry run
writes nothing. More examples: BPCOMPILE_FUZZ_EXAMPLES=1000 pytest tests/test_fuzz.py."""

import contextlib
import io
import json
import os
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpcompile.cli import main
from bpcompile.nn.budget import estimate
from bpcompile.compiler import input_spec
from bpcompile.spec import spec_from_dict

from spec_mutations import ROOT, load_base, mutated_spec, set_assignment

EXAMPLES = int(os.environ.get("BPCOMPILE_FUZZ_EXAMPLES", "50"))
DRY_RUN_LIMIT_BYTES = 256 * 2**20   # accepted mutants this small also take one training step
MAX_MESSAGE = 2000
# what a message names: a field path, the file, a layer, a --set assignment or a rule
NAMES_SOMETHING = re.compile(r"field `|spec file |layer '|--set |rule '|network\.|data\.|train\.|optimizer\.|rule\.")
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def cli(*args, cwd=None) -> tuple[int, str]:
    """Run the CLI in this process: (exit code, stdout + stderr). Any exception it lets out fails the test."""
    out = io.StringIO()
    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                main(list(args))
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
    finally:
        os.chdir(old)
    return code, out.getvalue()


def assert_clean(code: int, text: str, what: str) -> None:
    assert code in (0, 2), f"{what}: exit {code}\n{text[-3000:]}"
    assert "Traceback" not in text, f"{what}: traceback\n{text[-3000:]}"
    if code == 2:
        message = text.strip().splitlines()[-1] if text.strip() else ""
        assert len(text) <= MAX_MESSAGE + 300, f"{what}: {len(text)} characters of output"
        assert NAMES_SOMETHING.search(message), f"{what}: the message names no field, file or layer: {message}"


def dry_run_if_small(spec_path: Path, raw: dict, what: str) -> None:
    """One training step on random data of the accepted spec's shapes; nothing may be written."""
    spec = spec_from_dict(raw)
    if estimate(spec, *input_spec(spec)).bytes > DRY_RUN_LIMIT_BYTES or spec.data.name == "imagenet":
        return
    with tempfile.TemporaryDirectory() as cwd:
        code, text = cli("run", str(spec_path), "--dry-run", "1", "--device", "cpu", "--no-progress", cwd=cwd)
        assert_clean(code, text, what + " (dry run)")
        assert not os.listdir(cwd), f"{what}: the dry run wrote {os.listdir(cwd)}"


@FUZZ
@given(mutated_spec())
def test_mutated_specs_get_a_clean_answer(case):
    name, raw, mutations = case
    what = f"{name} with {mutations}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(raw))
        code, text = cli("validate", str(path))
        assert_clean(code, text, what)
        if code == 0:
            dry_run_if_small(path, raw, what)


@FUZZ
@given(st.data())
def test_set_paths_get_a_clean_answer(data):
    base = data.draw(st.sampled_from(["mnist_fc_bp.json", "mnist_fc_dtp.json", "mnist_lc_fa.json"]))
    assignment = data.draw(set_assignment(load_base(base)))
    code, text = cli("validate", str(ROOT / "specs" / base), "--set", assignment)
    assert_clean(code, text, f"{base} --set {assignment[:200]}")


def test_a_mutant_that_breaks_the_shape_names_the_layer():
    # a check that the assertions above can fail: this spec is valid JSON and schema, but the layer does not fit
    raw = load_base("mnist_lc_fa.json")
    raw["network"]["layers"][0].update(kernel=29, padding="valid")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(raw))
        code, text = cli("validate", str(path))
    assert code == 2 and "layer '" in text and "does not fit" in text
