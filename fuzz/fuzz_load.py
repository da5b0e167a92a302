"""atheris harness of the model loader (mlp.load): any file gives a Model
that predicts finite outputs, or a ValueError; never another exception, and
never more memory than the file's own size justifies (the allocation limit
of the run, -rss_limit_mb, catches a zip bomb).

    python fuzz/fuzz_load.py CORPUS_DIR -max_total_time=30 -rss_limit_mb=2048
"""

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    import numpy as np

    import mlp

PATH = os.path.join(tempfile.mkdtemp(prefix="mlp-fuzz-"), "model.npz")


def test_one_input(data):
    with open(PATH, "wb") as f:
        f.write(data)
    try:
        model = mlp.load(PATH, device="numpy")
    except ValueError:
        return
    X = np.ones((2, model.sizes[0]), dtype=np.float32)
    out = model.predict_logits(X)
    if out.shape != (2, model.sizes[-1]):
        raise AssertionError(f"a loaded model predicts {out.shape}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
