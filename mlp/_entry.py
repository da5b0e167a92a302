"""The `mlp` command's first code. Ctrl-C while Python is still loading the
package and numpy ends the command quietly (status 130) instead of printing
a traceback; once the command line runs, it handles Ctrl-C itself."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType


def _interrupted(signum: int, frame: FrameType | None) -> None:
    # os._exit, not sys.exit: a SystemExit raised inside an extension module's
    # import (numpy's) comes out of it as an ImportError with a traceback.
    # Nothing is open or half-written while the package loads.
    sys.stderr.write("mlp: interrupted\n")
    sys.stderr.flush()
    os._exit(130)


_SIGINT_SEEN = False


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """Python's default Ctrl-C handler, remembering that it ran."""
    global _SIGINT_SEEN
    _SIGINT_SEEN = True
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGINT, _interrupted)
    from .cli import main as cli_main  # numpy and the rest load here
    try:
        signal.signal(signal.SIGINT, _raise_interrupt)
        status = cli_main(argv)
    except KeyboardInterrupt:  # between the handlers, before cli_main's own try
        status = None
    if status is None or (status == 0 and _SIGINT_SEEN):
        # (the second: a KeyboardInterrupt that something on the way
        # swallowed; the command was interrupted all the same)
        sys.stderr.write("mlp: interrupted\n")
        return 130
    return status
