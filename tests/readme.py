"""The README as the tests read it: its sections and its settings tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def section(heading: str) -> str:
    """The text under ``## heading``, up to the next heading of that level."""
    text = README.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


@dataclass(frozen=True)
class Row:
    env: str
    default: str
    """The default cell as written (a value in backticks, or words)."""


def settings_table(text: str) -> dict[str, Row]:
    """The rows of the settings table in ``text``, by flag (without the dashes)."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `--"):
            flag, env, default = (cell.strip() for cell in line.split(" | ")[:3])
            rows[flag.strip("|` -")] = Row(env.strip("`"), default)
    return rows


def documented(default: object, described: str | None = None) -> str:
    """How the README's tables write a default: in backticks, ``true``/``false`` for
    booleans, ``none`` for no value — or in ``described`` words."""
    if described is not None:
        return described
    if default is None:
        return "none"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    return f"`{default}`"
