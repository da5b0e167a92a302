"""The `mlp` command's first code. Ctrl-C while Python is still loading the
package and numpy ends the command quietly (status 130) instead of printing
a traceback; once the command line runs, it handles Ctrl-C itself."""

import signal
import sys


def _interrupted(signum, frame):
    sys.stderr.write("mlp: interrupted\n")
    sys.exit(130)


def main(argv=None):
    signal.signal(signal.SIGINT, _interrupted)
    from .cli import main as cli_main  # numpy and the rest load here
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return cli_main(argv)
