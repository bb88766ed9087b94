"""Experiments over runs: random hyper-parameter search (`run_sweep` over a `SearchSpace`), several seeds of one
spec (`run_seeds`, `aggregate`) and Markdown reports with learning curves (`make_report`).

Every run is an ordinary run directory made by `run_experiment`; sweeps and seed sets only add a JSON record
(sweep.json, seeds.json) beside their runs, and continue where they stopped when run again."""

from .report import make_report
from .seeds import aggregate, run_seeds
from .space import SearchSpace, load_space, parse_space, sample, trial_rng
from .sweep import run_sweep

__all__ = ["SearchSpace", "aggregate", "load_space", "make_report", "parse_space", "run_seeds", "run_sweep",
           "sample", "trial_rng"]
