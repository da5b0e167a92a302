"""Model.to_onnx: the network as an ONNX graph (the `onnx` package is
needed, not imported by mlp otherwise), computing what predict_proba (or,
for regression, predict's outputs) computes, from float32 inputs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from . import reference
from ._files import write_atomic
from ._types import PathLike

if TYPE_CHECKING:
    from .model import Model

Op = Callable[..., str]
Const = Callable[[str | None, Any], str]

OPSET = 17
IR_VERSION = 8  # the IR of opset 17: older runtimes load the file too


def build(model: Model) -> Any:
    """The onnx.ModelProto of a Model: input "X" (N, D) float32, output "Y"."""
    from onnx import TensorProto, checker, helper, numpy_helper
    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str | None, value: Any) -> str:
        name = name or f"k{len(inits)}"
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def op(kind: str, inputs: list[str], **attrs: Any) -> str:
        out = f"t{len(nodes)}"
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    h = "X"
    if model.input_scale not in (None, 1.0):
        h = op("Mul", [h, const("input_scale", model.input_scale)])
    Ws, bs = reference.layer_views(model._flat, model.sizes)
    for l, (W, b) in enumerate(zip(Ws, bs)):
        h = op("Add", [op("MatMul", [h, const(f"W{l + 1}", W)]), const(f"b{l + 1}", b)])
        if l + 1 < len(Ws):
            h = _activation(op, const, model.activation, h)
    if model.loss == "cross_entropy":
        h = op("Softmax", [h], axis=1)
    elif model.loss == "binary_cross_entropy":
        h = op("Sigmoid", [h])
    elif model.loss == "poisson":
        h = op("Exp", [h])
    nodes.append(helper.make_node("Identity", [h], ["Y"]))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", model.sizes[0]])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", model.sizes[-1]])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mlp")
    proto.ir_version = IR_VERSION
    checker.check_model(proto)
    return proto


def _activation(op: Op, const: Const, name: str, x: str) -> str:
    if name == "relu":
        return op("Relu", [x])
    if name == "tanh":
        return op("Tanh", [x])
    if name == "logistic":
        return op("Sigmoid", [x])
    if name == "gelu":  # x * (1 + erf(x / sqrt 2)) / 2, the exact form
        erf = op("Erf", [op("Mul", [x, const(None, 1 / math.sqrt(2))])])
        half = op("Mul", [x, const(None, 0.5)])
        return op("Mul", [half, op("Add", [erf, const(None, 1.0)])])
    return x  # identity


def save(model: Model, path: PathLike) -> None:
    """Writes the ONNX file at exactly `path`, atomically."""
    proto = build(model)
    write_atomic(path, lambda f: f.write(proto.SerializeToString()))
