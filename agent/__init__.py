"""The edgefleet agent: the device side of the protocol, as a library and a CLI.

``agent.protocol`` is importable on its own (the southbound uses it); ``Agent``
is loaded on first use so that importing the protocol pulls in neither websockets
nor psutil nor asyncssh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgefleet.agent.commands import command
    from edgefleet.agent.runner import Agent

__all__ = ["Agent", "command"]


def __getattr__(name: str) -> Any:
    if name == "Agent":
        from edgefleet.agent.runner import Agent

        return Agent
    if name == "command":
        from edgefleet.agent.commands import command

        return command
    raise AttributeError(name)
