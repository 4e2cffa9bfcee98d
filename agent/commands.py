"""Custom commands: the registry behind ``@agent.command("name")``."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgefleet.agent import protocol
from edgefleet.agent.settings import SettingsError

Command = Callable[..., Any]


@dataclass(frozen=True)
class Outcome:
    status: str  # "success" | "fail"
    message: str
    data: Any = None


class CommandRegistry:
    """Maps command names to functions called with the command's ``params`` as
    keyword arguments. Synchronous functions run in a thread, so a command that
    blocks (a camera SDK call, a shell-out) never stalls the heartbeat."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def register(self, name: str, function: Command) -> None:
        if name in protocol.BUILTIN_ORDERS:
            raise ValueError(f"{name!r} is a built-in command")
        self._commands[name] = function

    def command(self, name: str) -> Callable[[Command], Command]:
        """Decorator: ``@registry.command("set_exposure")``."""

        def decorate(function: Command) -> Command:
            self.register(name, function)
            return function

        return decorate

    def names(self) -> list[str]:
        return sorted(self._commands)

    async def run(self, name: str, params: dict[str, Any]) -> Outcome:
        function = self._commands.get(name)
        if function is None:
            return Outcome("fail", protocol.UNKNOWN_ORDER_MESSAGE)
        try:
            inspect.signature(function).bind(**params)
        except TypeError as exc:
            return Outcome("fail", f"bad params: {exc}")
        try:
            if inspect.iscoroutinefunction(function):
                value = await function(**params)
            else:
                value = await asyncio.to_thread(function, **params)
        except Exception as exc:  # a command's failure is its result, not the agent's
            return Outcome("fail", str(exc) or type(exc).__name__)
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            return Outcome("fail", f"result is not JSON: {type(value).__name__}")
        return Outcome("success", protocol.MSG_ORDER_DONE, value)

    def load_module(self, path: str) -> None:
        """Import ``path`` (``--commands``) and register every function in it that
        ``agent.commands.command`` marked; a module that cannot be imported is a bad
        setting."""
        try:
            module = importlib.import_module(path)
        except ImportError as exc:
            raise SettingsError(f"--commands {path}: {exc}") from exc
        for value in vars(module).values():
            name = getattr(value, MARK, None)
            if isinstance(name, str) and callable(value):
                self.register(name, value)


MARK = "__edgefleet_command__"


def command(name: str) -> Callable[[Command], Command]:
    """Mark a function of a ``--commands`` module as the custom command ``name``.

    Marking instead of registering keeps the module importable on its own (tests,
    reuse) and free of any global registry.
    """

    def mark(function: Command) -> Command:
        setattr(function, MARK, name)
        return function

    return mark
