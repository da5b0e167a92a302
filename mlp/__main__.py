"""python -m mlp: the same as the `mlp` command."""
import sys

from ._entry import main

sys.exit(main())
