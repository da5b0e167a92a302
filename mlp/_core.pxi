# The Cython wrapper, written once against csrc/mlp.h and compiled once per
# core: mlp/_cpu.pyx and mlp/_cuda.pyx each include this file and link their
# core's library. Arguments arrive validated by mlp/_validation.py; the core
# checks them again and its status codes become Python exceptions here.

from libc.stdint cimport int32_t, int64_t, uint8_t

import numpy as np

cdef extern from "mlp.h" nogil:
    ctypedef enum mlp_status:
        MLP_OK
        MLP_ERR_NOMEM
        MLP_ERR_INVALID
        MLP_ERR_NO_DEVICE
        MLP_ERR_DEVICE
    ctypedef enum mlp_dtype:
        MLP_UINT8
        MLP_FLOAT32
    ctypedef struct mlp_model:
        pass
    ctypedef struct mlp_data:
        pass
    int MLP_ABI_VERSION
    const char *mlp_backend_name()
    mlp_status mlp_device_check()
    const char *mlp_last_error()
    mlp_status mlp_create(mlp_model **model, int n_sizes, const int64_t *sizes)
    void mlp_free(mlp_model *model)
    int64_t mlp_num_params(const mlp_model *model)
    mlp_status mlp_use_plain_ops(mlp_model *model, int on)
    const char *mlp_kernel_set(const mlp_model *model)
    mlp_status mlp_set_params(mlp_model *model, const float *params)
    mlp_status mlp_get_params(mlp_model *model, float *params)
    mlp_status mlp_data_create(mlp_data **data, const void *X, mlp_dtype dtype,
                               const int32_t *y, int64_t n, int64_t d)
    void mlp_data_free(mlp_data *data)
    mlp_status mlp_train_epoch(mlp_model *model, const mlp_data *data, const int64_t *order,
                               int64_t n_order, int64_t batch_size, float lr, float momentum, float weight_decay,
                               float *batch_losses, double *mean_loss, double *accuracy)
    mlp_status mlp_predict(mlp_model *model, const mlp_data *data, float *out, int want_logits)
    mlp_status mlp_evaluate(mlp_model *model, const mlp_data *data, double *mean_loss,
                            double *accuracy)


class DeviceUnavailable(RuntimeError):
    """This core cannot run on this machine (no GPU, driver too old)."""


cdef int check(mlp_status status) except -1:
    if status == MLP_OK:
        return 0
    message = mlp_last_error().decode("utf-8", "replace")
    if status == MLP_ERR_NOMEM:
        raise MemoryError(message)
    if status == MLP_ERR_INVALID:
        raise ValueError(message)
    if status == MLP_ERR_NO_DEVICE:
        raise DeviceUnavailable(message)
    raise RuntimeError(message)


ABI_VERSION = MLP_ABI_VERSION
BACKEND = mlp_backend_name().decode()


def device_check():
    """Raises DeviceUnavailable when this core cannot run here."""
    check(mlp_device_check())


cdef class Data:
    """A data set bound to the core: X (n, d) uint8 or float32, C-contiguous;
    y (n) int32 class indices or None. Holds X and y alive for the core."""
    cdef mlp_data *ptr
    cdef object X, y
    cdef readonly int64_t n, d

    def __cinit__(self, X, y=None):
        cdef const uint8_t[:, ::1] xu8
        cdef const float[:, ::1] xf32
        cdef const int32_t[::1] labels
        cdef const void *xp
        cdef const int32_t *yp = NULL
        cdef mlp_dtype dtype
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"X must be a non-empty 2-D array, got shape {X.shape}")
        if X.dtype == np.uint8:
            xu8 = X
            xp = &xu8[0, 0]
            dtype = MLP_UINT8
        else:
            xf32 = X
            xp = &xf32[0, 0]
            dtype = MLP_FLOAT32
        if y is not None:
            labels = y
            if labels.shape[0] != X.shape[0]:
                raise ValueError("X and y have different lengths")
            yp = &labels[0]
        self.X, self.y = X, y
        self.n, self.d = X.shape[0], X.shape[1]
        cdef mlp_status status
        with nogil:
            status = mlp_data_create(&self.ptr, xp, dtype, yp, self.n, self.d)
        check(status)

    def __dealloc__(self):
        if self.ptr is not NULL:
            mlp_data_free(self.ptr)

    @property
    def has_labels(self):
        return self.y is not None


cdef class Model:
    """Parameters, optimizer state and workspace of one network in the core."""
    cdef mlp_model *ptr
    cdef readonly tuple sizes
    cdef readonly int64_t n_params, n_classes

    def __cinit__(self, sizes):
        cdef int64_t[::1] s = np.asarray(sizes, dtype=np.int64).reshape(-1).copy()
        if s.shape[0] < 2:
            raise ValueError(f"sizes must hold at least 2 layer widths, got {len(s)}")
        self.sizes = tuple(int(v) for v in s)
        self.n_classes = self.sizes[len(self.sizes) - 1]
        cdef mlp_status status
        with nogil:
            status = mlp_create(&self.ptr, <int>s.shape[0], &s[0])
        check(status)
        self.n_params = mlp_num_params(self.ptr)

    def __dealloc__(self):
        if self.ptr is not NULL:
            mlp_free(self.ptr)

    @property
    def kernel_set(self):
        """The code that runs this model's arithmetic: "plain", "base" or "avx2" in the C
        core; "plain", "fused" or "cuda" in the CUDA core (see csrc/mlp.h)."""
        return mlp_kernel_set(self.ptr).decode()

    def use_plain_ops(self, bint on=True):
        """Run the lecture's plain ops instead of the fast paths (C core: csrc/ops.c;
        CUDA core: a kernel per op instead of one kernel per epoch)."""
        check(mlp_use_plain_ops(self.ptr, on))

    def set_params(self, const float[::1] params):
        if params.shape[0] != self.n_params:
            raise ValueError(f"expected {self.n_params} parameters, got {params.shape[0]}")
        cdef mlp_status status
        with nogil:
            status = mlp_set_params(self.ptr, &params[0])
        check(status)

    def get_params(self):
        out = np.empty(self.n_params, dtype=np.float32)
        cdef float[::1] o = out
        cdef mlp_status status
        with nogil:
            status = mlp_get_params(self.ptr, &o[0])
        check(status)
        return out

    def train_epoch(self, Data data, const int64_t[::1] order, int64_t batch_size, float lr,
                    float momentum=0.0, float weight_decay=0.0):
        """SGD over the rows order (an epoch, or part of one); returns
        (batch losses, mean loss, accuracy)."""
        if order.shape[0] < 1:
            raise ValueError("order is empty")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        losses = np.empty((order.shape[0] + batch_size - 1) // batch_size, dtype=np.float32)
        cdef float[::1] lp = losses
        cdef double mean_loss = 0.0, accuracy = 0.0
        cdef mlp_status status
        with nogil:
            status = mlp_train_epoch(self.ptr, data.ptr, &order[0], order.shape[0], batch_size, lr,
                                     momentum,
                                     weight_decay, &lp[0], &mean_loss, &accuracy)
        check(status)
        return losses, mean_loss, accuracy

    def predict(self, Data data, bint logits=False):
        out = np.empty((data.n, self.n_classes), dtype=np.float32)
        cdef float[:, ::1] o = out
        cdef mlp_status status
        with nogil:
            status = mlp_predict(self.ptr, data.ptr, &o[0, 0], logits)
        check(status)
        return out

    def evaluate(self, Data data):
        """(mean loss, accuracy) over a labelled data set."""
        cdef double loss = 0.0, accuracy = 0.0
        cdef mlp_status status
        with nogil:
            status = mlp_evaluate(self.ptr, data.ptr, &loss, &accuracy)
        check(status)
        return loss, accuracy
