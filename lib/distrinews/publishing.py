"""What the serve and publish commands share: their user error, a clean staging folder, the optional imports.

`serving` (serve, publish space) and `kaggle` (publish kaggle) both import this module and nothing of each other's
but the `publish kaggle` registration; the CLI catches PublishError and prints it in one line (exit 2).
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from types import ModuleType


class PublishError(ValueError):
    """A publish or serve that cannot go ahead; the message says what to fix."""


def needs(module: str, command: str, extra: str | None = None) -> ModuleType:
    """Import an optional dependency of `command`, or fail with the pip command that installs it.

    Args:
        extra: the distrinews extra that brings it ("course", "space"); None for a core dependency.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:  # also raised for a module set to None in sys.modules
        missing = err.name or module  # gradio present but its fastapi missing: the extra brings both
        install = f'pip install "distrinews[{extra}]"' if extra else f"pip install {module}"
        raise PublishError(f"`distrinews {command}` needs {missing}, which is not installed here: {install}") from None


def fresh_dir(path: Path) -> Path:
    """An empty folder at path: a staged folder never keeps files from an earlier run."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
