import os

# Triton kernels run on the CPU through the interpreter in tests; it must be set before triton is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")

# the graph cache of this test session: its own directory (never the user's ~/.cache), shared by the
# subprocesses the CLI tests start; tests of the cache itself point it elsewhere
if "BPCOMPILE_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["BPCOMPILE_CACHE_DIR"] = tempfile.mkdtemp(prefix="bpcompile-test-graphs-")
    atexit.register(shutil.rmtree, os.environ["BPCOMPILE_CACHE_DIR"], True)

import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))
