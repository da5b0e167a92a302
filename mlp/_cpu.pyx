# cython: language_level=3, boundscheck=False, wraparound=False
"""The C core (csrc/), through the wrapper shared by every core."""
include "_core.pxi"
