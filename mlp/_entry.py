"""The `mlp` command's first code. Ctrl-C while Python is still loading the
package and numpy ends the command quietly (status 130) instead of printing
a traceback; once the command line runs, it handles Ctrl-C itself."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from types import FrameType


def _interrupted(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write("mlp: interrupted\n")
    sys.exit(130)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGINT, _interrupted)
    from .cli import main as cli_main  # numpy and the rest load here
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return cli_main(argv)
