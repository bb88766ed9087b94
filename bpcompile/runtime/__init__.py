"""Training runtime: run, resume and dry-run compiled programs."""

from .step import CompiledEval, CompiledStep
from .trainer import Trainer, dry_run, resume_experiment, run_experiment

__all__ = ["CompiledEval", "CompiledStep", "Trainer", "dry_run", "resume_experiment", "run_experiment"]
