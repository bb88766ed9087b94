"""Loading rules that live outside the package.

Two ways, both explicit (a spec file never names code to import: specs stay data):
  - `--plugin FILE.py` on the command line (repeatable), or `load_plugins(["FILE.py"])` from Python: the
    file is run once as a module; its `@register_rule` classes register themselves.
  - an installed package that declares an entry point in the group `bpcompile.rules`
    (pyproject: [project.entry-points."bpcompile.rules"] my_rule = "my_package.my_rule"): every such
    module is imported the first time plug-ins are loaded.
A plug-in that fails to load is reported in one paragraph naming the file (or entry point) and the
line, with a non-zero exit and no traceback."""

import hashlib
import importlib.util
import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from .errors import BpcompileError

ENTRY_POINT_GROUP = "bpcompile.rules"

_LOADED_FILES: dict[Path, ModuleType] = {}
_ENTRY_POINTS_LOADED = False


def _where(error: BaseException, path: Path) -> str:
    """' (line N)' of the innermost frame in the plug-in file, or of a syntax error."""
    if isinstance(error, SyntaxError) and error.lineno:
        return f" (line {error.lineno})"
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).resolve() == path]
    return f" (line {frames[-1].lineno})" if frames else ""


def load_plugin_file(file: str | Path) -> ModuleType:
    """Run a plug-in file once (loading it again is a no-op) and return its module."""
    import bpcompile.compiler.rules  # noqa: F401  (the built-in rules first: a plug-in may extend them)

    path = Path(file).expanduser()
    if not path.is_file():
        raise BpcompileError(f"--plugin {file}: no such file (a plug-in is a Python file that registers a rule "
                             f"with @register_rule; see docs/writing-a-rule.md).")
    if path.suffix != ".py":
        raise BpcompileError(f"--plugin {file}: a plug-in is a .py file.")
    path = path.resolve()
    if path in _LOADED_FILES:
        return _LOADED_FILES[path]
    # a module name of its own per file, so two plug-ins called rule.py do not collide
    name = f"bpcompile_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module           # dataclasses and pydantic look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    except BpcompileError as error:
        del sys.modules[name]
        raise BpcompileError(f"plug-in {path} failed to load: {error}") from None
    except Exception as error:           # anything the file raises: one paragraph, not a traceback
        del sys.modules[name]
        raise BpcompileError(
            f"plug-in {path} failed to load{_where(error, path)}: {type(error).__name__}: {error}"
        ) from None
    _LOADED_FILES[path] = module
    return module


def load_entry_point_plugins() -> list[str]:
    """Import every installed module of the `bpcompile.rules` entry-point group (once); their names."""
    global _ENTRY_POINTS_LOADED
    found = list(entry_points(group=ENTRY_POINT_GROUP))
    if _ENTRY_POINTS_LOADED:
        return [ep.name for ep in found]
    _ENTRY_POINTS_LOADED = True
    import bpcompile.compiler.rules  # noqa: F401
    for ep in found:
        try:
            ep.load()
        except Exception as error:
            raise BpcompileError(
                f"the installed plug-in {ep.name!r} (entry point {ep.value!r} in group {ENTRY_POINT_GROUP!r}) failed "
                f"to load: {type(error).__name__}: {error}"
            ) from None
    return [ep.name for ep in found]


def load_plugins(files=()) -> list[ModuleType]:
    """The installed plug-ins, then each file of `files` in order."""
    load_entry_point_plugins()
    return [load_plugin_file(file) for file in files]
