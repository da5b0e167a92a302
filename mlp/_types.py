"""Type aliases of the public API (for annotations only)."""

from __future__ import annotations

import os
from typing import Any, Union

import numpy as np
import numpy.typing as npt

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
Array = npt.NDArray[Any]
FloatArray = npt.NDArray[np.float32]
