"""atheris harness of the Python IDX reader (mlp.datasets.parse_idx): any
bytes give an array that keeps the rules of csrc/idx.h, or a ValueError;
never another exception.

    python fuzz/fuzz_idx.py CORPUS_DIR -max_total_time=30
"""

import sys

import atheris

with atheris.instrument_imports():
    from mlp.datasets import parse_idx


def test_one_input(data):
    try:
        array = parse_idx(data, "input")
    except ValueError:
        return
    head = 4 + 4 * data[3]
    if array.ndim != data[3] or array.size * array.itemsize != len(data) - head:
        raise AssertionError(f"accepted {len(data)} bytes as {array.shape} {array.dtype}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
