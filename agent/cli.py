"""``edgefleet-agent``: the device-side command line."""

from __future__ import annotations

import sys


def main() -> int:
    sys.stderr.write("edgefleet-agent: not yet implemented (see the agent issue)\n")
    return 1
