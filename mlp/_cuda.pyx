# cython: language_level=3, boundscheck=False, wraparound=False
"""The CUDA core (cuda/), through the wrapper shared by every core."""
include "_core.pxi"
