# The Cython wrapper, written once against csrc/mlp.h and compiled once per
# core: mlp/_cpu.pyx and mlp/_cuda.pyx each include this file and link their
# core's library. Arguments arrive validated by mlp/_validation.py; the core
# checks them again and its status codes become Python exceptions here.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

import numpy as np

cdef extern from "mlp.h" nogil:
    ctypedef enum mlp_status:
        MLP_OK
        MLP_ERR_NOMEM
        MLP_ERR_INVALID
        MLP_ERR_NO_DEVICE
        MLP_ERR_DEVICE
        MLP_STOPPED
    ctypedef enum mlp_dtype:
        MLP_UINT8
        MLP_FLOAT32
    ctypedef enum mlp_activation:
        pass
    ctypedef enum mlp_loss:
        pass
    ctypedef enum mlp_optimizer_kind:
        pass
    ctypedef enum mlp_convention:
        pass
    ctypedef struct mlp_config:
        int n_sizes
        const int64_t *sizes
        mlp_activation activation
        mlp_loss loss
        float input_scale
    ctypedef struct mlp_optimizer:
        mlp_optimizer_kind kind
        mlp_convention convention
        float lr
        float momentum
        int nesterov
        float weight_decay
        int decoupled
        float beta1
        float beta2
        float eps
    ctypedef struct mlp_targets:
        const int32_t *labels
        const float *values
        int64_t n_outputs
        const float *sample_weight
    ctypedef struct mlp_model:
        pass
    ctypedef struct mlp_data:
        pass
    int MLP_ABI_VERSION
    const char *mlp_backend_name()
    mlp_status mlp_device_check()
    mlp_status mlp_check_rounding(int64_t samples, uint64_t seed, int64_t *mismatches)
    const char *mlp_last_error()
    mlp_status mlp_create(mlp_model **model, const mlp_config *config)
    void mlp_free(mlp_model *model)
    int64_t mlp_num_params(const mlp_model *model)
    mlp_status mlp_use_plain_ops(mlp_model *model, int on)
    mlp_status mlp_set_threads(mlp_model *model, int n_threads)
    const char *mlp_kernel_set(const mlp_model *model)
    mlp_status mlp_set_params(mlp_model *model, const float *params)
    mlp_status mlp_get_params(mlp_model *model, float *params)
    mlp_status mlp_get_state(mlp_model *model, float *state, int64_t *steps)
    mlp_status mlp_set_state(mlp_model *model, const float *state, int64_t steps)
    mlp_status mlp_data_create(mlp_data **data, const void *X, mlp_dtype dtype, int64_t n,
                               int64_t d, const mlp_targets *targets)
    void mlp_data_free(mlp_data *data)
    int mlp_data_on_host(const mlp_data *data)
    mlp_status mlp_train_epoch(mlp_model *model, const mlp_data *data, const int64_t *order,
                               int64_t n_order, int64_t batch_size, const mlp_optimizer *opt,
                               float *batch_losses, double *mean_loss, double *accuracy)
    void mlp_request_stop(mlp_model *model)
    mlp_status mlp_loss_and_grad(mlp_model *model, const mlp_data *data,
                                 const mlp_optimizer *opt, double *loss, float *grad)
    mlp_status mlp_predict(mlp_model *model, const mlp_data *data, float *out, int want_logits)
    mlp_status mlp_predict_classes(mlp_model *model, const mlp_data *data, int32_t *out)
    mlp_status mlp_evaluate(mlp_model *model, const mlp_data *data, double *mean_loss,
                            double *accuracy)


class DeviceUnavailable(RuntimeError):
    """This core cannot run on this machine (no GPU, driver too old)."""


class Stopped(Exception):
    """An epoch ended early at request_stop(); args[0] is the message."""


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
    if status == MLP_STOPPED:
        raise Stopped(message)
    raise RuntimeError(message)


ABI_VERSION = MLP_ABI_VERSION
BACKEND = mlp_backend_name().decode()

# The enums of mlp.h by the names the Python API uses.
ACTIVATIONS = {"relu": 0, "tanh": 1, "logistic": 2, "identity": 3, "gelu": 4}
LOSSES = {"cross_entropy": 0, "squared_error": 1, "binary_cross_entropy": 2, "poisson": 3}


def device_check():
    """Raises DeviceUnavailable when this core cannot run here."""
    check(mlp_device_check())


def check_rounding(int64_t samples, uint64_t seed=0):
    """How many of `samples` inputs this core's division or square root
    (mlp_div, mlp_sqrt) rounds otherwise than IEEE float32 (mlp_check_rounding)."""
    cdef int64_t mismatches = 0
    cdef mlp_status status
    with nogil:
        status = mlp_check_rounding(samples, seed, &mismatches)
    check(status)
    return mismatches


cdef int fill_optimizer(mlp_optimizer *o, dict opt) except -1:
    """opt: the keys of mlp._config.Optimizer.core_dict()."""
    o.kind = <mlp_optimizer_kind>(1 if opt["kind"] == "adam" else 0)
    o.convention = <mlp_convention>(1 if opt["convention"] == "sklearn" else 0)
    o.lr = opt["lr"]
    o.momentum = opt["momentum"]
    o.nesterov = opt["nesterov"]
    o.weight_decay = opt["weight_decay"]
    o.decoupled = opt["decoupled"]
    o.beta1 = opt["beta1"]
    o.beta2 = opt["beta2"]
    o.eps = opt["eps"]
    return 0


cdef class Data:
    """A data set bound to the core: X (n, d) uint8 or float32, C-contiguous;
    labels (n) int32 class indices, or values (n, k) float32 targets, or
    neither; sample_weight (n) float32 or None. Holds them alive for the core."""
    cdef mlp_data *ptr
    cdef object X, labels, values, sample_weight
    cdef readonly int64_t n, d

    def __cinit__(self, X, labels=None, values=None, sample_weight=None):
        cdef const uint8_t[:, ::1] xu8
        cdef const float[:, ::1] xf32
        cdef const int32_t[::1] lab
        cdef const float[:, ::1] val
        cdef const float[::1] sw
        cdef const void *xp
        cdef mlp_targets t
        cdef mlp_dtype dtype
        t.labels = NULL
        t.values = NULL
        t.n_outputs = 0
        t.sample_weight = NULL
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
        if labels is not None:
            lab = labels
            if lab.shape[0] != X.shape[0]:
                raise ValueError("X and labels have different lengths")
            t.labels = &lab[0]
        if values is not None:
            val = values
            if val.shape[0] != X.shape[0]:
                raise ValueError("X and values have different lengths")
            t.values = &val[0, 0]
            t.n_outputs = val.shape[1]
        if sample_weight is not None:
            sw = sample_weight
            if sw.shape[0] != X.shape[0]:
                raise ValueError("X and sample_weight have different lengths")
            t.sample_weight = &sw[0]
        self.X, self.labels, self.values, self.sample_weight = X, labels, values, sample_weight
        self.n, self.d = X.shape[0], X.shape[1]
        cdef const mlp_targets *tp = &t if labels is not None or values is not None else NULL
        cdef mlp_status status
        with nogil:
            status = mlp_data_create(&self.ptr, xp, dtype, self.n, self.d, tp)
        check(status)

    def __dealloc__(self):
        if self.ptr is not NULL:
            mlp_data_free(self.ptr)

    @property
    def has_targets(self):
        return self.labels is not None or self.values is not None

    @property
    def on_host(self):
        """Whether the core reads the rows from X as it goes (the C core
        always; the CUDA core for prediction and for data over its limit)
        rather than from its own copy."""
        return mlp_data_on_host(self.ptr) != 0


cdef class Model:
    """Parameters, optimizer state and workspace of one network in the core."""
    cdef mlp_model *ptr
    cdef readonly tuple sizes
    cdef readonly int64_t n_params, n_outputs

    def __cinit__(self, sizes, activation="relu", loss="cross_entropy", input_scale=1.0):
        cdef int64_t[::1] s = np.asarray(sizes, dtype=np.int64).reshape(-1).copy()
        if s.shape[0] < 2:
            raise ValueError(f"sizes must hold at least 2 layer widths, got {len(s)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}")
        self.sizes = tuple(int(v) for v in s)
        self.n_outputs = self.sizes[len(self.sizes) - 1]
        cdef mlp_config config
        config.n_sizes = <int>s.shape[0]
        config.sizes = &s[0]
        config.activation = <mlp_activation>ACTIVATIONS[activation]
        config.loss = <mlp_loss>LOSSES[loss]
        config.input_scale = input_scale
        cdef mlp_status status
        with nogil:
            status = mlp_create(&self.ptr, &config)
        check(status)
        self.n_params = mlp_num_params(self.ptr)

    def __dealloc__(self):
        if self.ptr is not NULL:
            mlp_free(self.ptr)

    @property
    def kernel_set(self):
        """The code that runs this model's arithmetic (see mlp_kernel_set in csrc/mlp.h)."""
        return mlp_kernel_set(self.ptr).decode()

    def set_threads(self, int n_threads):
        """Threads for this model's work in the C core (0: all cores); the CUDA core ignores it."""
        check(mlp_set_threads(self.ptr, n_threads))

    def use_plain_ops(self, bint on=True):
        """Run the lecture's plain ops instead of the fast paths (C core: csrc/ops.c;
        CUDA core: cuda/ops.cu, a readable kernel per op)."""
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

    def get_state(self):
        """(state (2 * n_params float32: first moment or velocity, then second moment), steps)."""
        out = np.empty(2 * self.n_params, dtype=np.float32)
        cdef float[::1] o = out
        cdef int64_t steps = 0
        cdef mlp_status status
        with nogil:
            status = mlp_get_state(self.ptr, &o[0], &steps)
        check(status)
        return out, int(steps)

    def set_state(self, const float[::1] state, int64_t steps):
        if state.shape[0] != 2 * self.n_params:
            raise ValueError(f"expected {2 * self.n_params} state values, got {state.shape[0]}")
        cdef mlp_status status
        with nogil:
            status = mlp_set_state(self.ptr, &state[0], steps)
        check(status)

    def request_stop(self):
        """Ends the running (or next) epoch after the batch in hand; any thread."""
        mlp_request_stop(self.ptr)

    def train_epoch(self, Data data, const int64_t[::1] order, int64_t batch_size, dict opt):
        """One optimizer step per batch over the rows order (an epoch, or part of one);
        returns (batch losses, mean loss, accuracy). opt: see fill_optimizer."""
        if order.shape[0] < 1:
            raise ValueError("order is empty")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if batch_size > order.shape[0]:
            batch_size = order.shape[0]  # one batch: the same, and no overflow below
        cdef mlp_optimizer o
        fill_optimizer(&o, opt)
        losses = np.empty((order.shape[0] + batch_size - 1) // batch_size, dtype=np.float32)
        cdef float[::1] lp = losses
        cdef double mean_loss = 0.0, accuracy = 0.0
        cdef mlp_status status
        with nogil:
            status = mlp_train_epoch(self.ptr, data.ptr, &order[0], order.shape[0], batch_size,
                                     &o, &lp[0], &mean_loss, &accuracy)
        check(status)
        return losses, mean_loss, accuracy

    def loss_and_grad(self, Data data, dict opt, bint want_grad=True):
        """(loss, gradient (n_params float32) or None) over the whole data set."""
        cdef mlp_optimizer o
        fill_optimizer(&o, opt)
        grad = np.empty(self.n_params, dtype=np.float32) if want_grad else None
        cdef float[::1] g
        cdef float *gp = NULL
        if want_grad:
            g = grad
            gp = &g[0]
        cdef double loss = 0.0
        cdef mlp_status status
        with nogil:
            status = mlp_loss_and_grad(self.ptr, data.ptr, &o, &loss, gp)
        check(status)
        return loss, grad

    def predict(self, Data data, bint logits=False):
        out = np.empty((data.n, self.n_outputs), dtype=np.float32)
        cdef float[:, ::1] o = out
        cdef mlp_status status
        with nogil:
            status = mlp_predict(self.ptr, data.ptr, &o[0, 0], logits)
        check(status)
        return out

    def predict_classes(self, Data data):
        """Each row's index of its largest output (int32)."""
        out = np.empty(data.n, dtype=np.int32)
        cdef int32_t[::1] o = out
        cdef mlp_status status
        with nogil:
            status = mlp_predict_classes(self.ptr, data.ptr, &o[0])
        check(status)
        return out

    def evaluate(self, Data data):
        """(mean loss, accuracy) over a data set with targets."""
        cdef double loss = 0.0, accuracy = 0.0
        cdef mlp_status status
        with nogil:
            status = mlp_evaluate(self.ptr, data.ptr, &loss, &accuracy)
        check(status)
        return loss, accuracy
