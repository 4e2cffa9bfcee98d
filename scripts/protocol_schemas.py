"""JSON Schemas of the device protocol's frames, from their declarations.

``agent/protocol.py`` declares every frame once (a ``TypedDict`` registered with
``@wire_frame``); this turns each into ``docs/schemas/<name>.json`` with
pydantic's ``TypeAdapter``, for device makers who write their clients in other
languages. ``python -m scripts.protocol_schemas`` (``make schemas``) writes them;
``tests/agent/test_protocol_schemas.py`` fails when the checked-in files are not
what this makes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, get_type_hints

from pydantic import ConfigDict, TypeAdapter
from typing_extensions import is_typeddict  # the standard one misses its TypedDicts on 3.11

from edgefleet.agent import protocol

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
SENT_BY = {
    protocol.DEVICE: "Sent by the device to the cloud.",
    protocol.CLOUD: "Sent by the cloud to the device.",
}


def schema(frame: protocol.WireFrame) -> dict[str, Any]:
    """The JSON Schema of one frame: its fields' docstrings become descriptions."""
    _describe_fields(frame.shape)
    generated = TypeAdapter(frame.shape).json_schema()
    _tidy(generated)
    doc = frame.description or generated.pop("description", "")
    return {
        "$schema": DIALECT,
        "$id": f"{frame.name}.json",
        "title": frame.name,
        "description": f"{SENT_BY[frame.sender]} {doc}".strip(),
        **{k: v for k, v in generated.items() if k != "title"},
    }


def schemas() -> dict[str, str]:
    """File name → text, for every frame."""
    return {
        f"{name}.json": json.dumps(schema(frame), indent=2, ensure_ascii=False) + "\n"
        for name, frame in protocol.WIRE_FRAMES.items()
    }


def _describe_fields(shape: Any, seen: set[Any] | None = None) -> None:
    """Let pydantic read the docstrings under the fields of every TypedDict the
    shape reaches (protocol.py itself stays free of pydantic)."""
    seen = set() if seen is None else seen
    for member in getattr(shape, "__args__", (shape,)):
        if is_typeddict(member) and member not in seen:
            seen.add(member)
            member.__pydantic_config__ = ConfigDict(use_attribute_docstrings=True)
            for hint in get_type_hints(member, vars(protocol)).values():
                _describe_fields(hint, seen)


def _tidy(node: Any) -> None:
    """Descriptions on one line each, in Markdown's quotes; no property titles
    (pydantic titles each after its name, "Device Id": noise)."""
    if isinstance(node, dict):
        for value in node.get("properties", {}).values():
            value.pop("title", None)
        if isinstance(node.get("description"), str):
            node["description"] = " ".join(node["description"].replace("``", "`").split())
        for value in node.values():
            _tidy(value)
    elif isinstance(node, list):
        for value in node:
            _tidy(value)


def write(directory: Path = SCHEMAS) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schemas().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    for stale in set(directory.glob("*.json")) - set(written):
        stale.unlink()
    return written


if __name__ == "__main__":
    for path in write():
        sys.stdout.write(
            f"{path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}\n"
        )
