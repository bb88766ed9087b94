"""bpcompile: biologically-motivated learning rules compiled from a declarative spec.

    from bpcompile.spec import load_spec
    from bpcompile.compiler import compile_experiment
"""

__version__ = "0.1.0"
