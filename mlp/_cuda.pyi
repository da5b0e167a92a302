# The CUDA core is compiled from the same wrapper (mlp/_core.pxi) as the C
# core: the same names and signatures.
from mlp._cpu import (ABI_VERSION, ACTIVATIONS, BACKEND, LOSSES, Data, DeviceUnavailable,
                      Model, Stopped, check_rounding, device_check)

__all__ = ["ABI_VERSION", "ACTIVATIONS", "BACKEND", "LOSSES", "Data", "DeviceUnavailable",
           "Model", "Stopped", "check_rounding", "device_check"]
