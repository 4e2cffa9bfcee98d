"""What the installed ``edgefleet`` distribution says: its version, and its extras.

The version is what ``--version`` prints on both CLIs.

Missing optional dependencies are said in one line instead of a traceback.
edgefleet installs nothing by default: the device needs ``edgefleet[agent]``, the
server ``edgefleet[server]``. Run with the wrong one, a CLI would die with
``ModuleNotFoundError: psutil``; ``missing_extra`` recognises such an error and
names the extra to install instead. Which modules each extra brings is read from
the installed distribution's metadata, so ``pyproject.toml`` stays the one list.

Standard library only: the controller's CLI uses it too, and on a device it must
work before anything optional is there.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from importlib import metadata

DISTRIBUTION = "edgefleet"
EXIT_MISSING_EXTRA = 3
"""Exit code of a CLI that lacks its extra (2 is a bad setting)."""

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)[^;]*;(.*)$")


def installed_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def extra_modules(extra: str) -> frozenset[str]:
    """The top-level import names of the requirements ``extra`` adds (the
    distributions edgefleet uses are all imported under their own name)."""
    try:
        requirements = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return frozenset()
    modules = set()
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement)
        if match and re.search(rf"""extra\s*==\s*["']{re.escape(extra)}["']""", match[2]):
            modules.add(match[1].lower().replace("-", "_").replace(".", "_"))
    return frozenset(modules)


def missing_extra(exc: ModuleNotFoundError, extra: str) -> str | None:
    """One line saying what to install, when ``exc`` is a module of ``extra``
    missing; ``None`` for any other missing module (a bug, or the user's own)."""
    module = (exc.name or "").partition(".")[0]
    if module not in extra_modules(extra):
        return None
    return (
        f"the Python module {module!r} is missing: "
        f"install edgefleet[{extra}] (pip install 'edgefleet[{extra}]')"
    )


def explaining_missing_extra(program: str, extra: str, body: Callable[[], int]) -> int:
    """Run ``body``; if it stops on a missing module of ``extra``, print one line
    naming the extra and return ``EXIT_MISSING_EXTRA``."""
    try:
        return body()
    except ModuleNotFoundError as exc:
        message = missing_extra(exc, extra)
        if message is None:
            raise
        sys.stderr.write(f"{program}: {message}\n")
        return EXIT_MISSING_EXTRA
