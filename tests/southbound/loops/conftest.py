"""Every test here runs twice: on the standard event loop, which the rest of the
suite uses, and on uvloop, which ``edgefleet serve`` and ``edgefleet southbound``
run on. Their timers differ — uvloop counts whole milliseconds, and for a time
already due it returns a plain handle instead of a timer — so the code that
sets a connection's deadlines is tested on both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
