"""python -m mlp: the same as the `mlp` command.

Run from the repository root, `python -m mlp` finds the source tree's
`mlp/`, which has no compiled core. It then runs the installed copy of the
package when there is one, and otherwise says so in one line."""
import importlib.machinery
import os
import signal
import sys

from mlp._entry import _interrupted

signal.signal(signal.SIGINT, _interrupted)  # Ctrl-C from the first moment: no traceback


def _source_tree_without_core() -> str | None:
    """The folder holding this package when it is the uncompiled source tree."""
    here = os.path.dirname(os.path.abspath(__file__))
    compiled = any(name.startswith("_cpu.") and name.endswith((".so", ".pyd"))
                   for name in os.listdir(here))
    if compiled or not os.path.exists(os.path.join(here, "_core.pxi")):
        return None
    return os.path.dirname(here)


def _run() -> int:
    root = _source_tree_without_core()
    if root is not None:
        others = [p for p in sys.path if os.path.abspath(p or os.curdir) != root]
        if importlib.machinery.PathFinder.find_spec("mlp", others) is None:
            sys.stderr.write(f"mlp: {root}/mlp is the source tree, which has no compiled core; "
                             "install the package first (pip install .)\n")
            return 2
        sys.path[:] = others  # the installed copy, as from any other folder
        for name in [m for m in sys.modules if m == "mlp" or m.startswith("mlp.")]:
            del sys.modules[name]
    from mlp._entry import main
    return main()


sys.exit(_run())
