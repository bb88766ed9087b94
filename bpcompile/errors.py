"""The one exception type that means "the user's input is wrong".

Everything that a user can fix (a bad spec field, a missing data file, a layer
that does not fit its input, a rule not built yet) raises `BpcompileError`
with a one-paragraph message naming the field, file or layer at fault. The CLI
prints the message and exits with `exit_code`, without a traceback. Any other
exception is a bug in bpcompile and keeps its traceback.
"""


class BpcompileError(Exception):
    """A user-fixable error; the message is shown as is."""

    exit_code = 2


class NotImplementedYet(BpcompileError):
    """The spec is valid but asks for behaviour that is not built yet."""


class TrainingDiverged(BpcompileError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3
