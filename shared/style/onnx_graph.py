"""A quantized (QDQ) ONNX convolution graph rebuilt as a TensorFlow module, channels last.

Why a node-by-node rebuild rather than a hand-written architecture: the arbitrary-style networks
(shared/style/arbitrary.py) are int8 TFLite models converted to ONNX, so every activation passes
through QuantizeLinear/DequantizeLinear pairs (195 of them in the transformer), and instance-norm
statistics are quantized too. Emulating exactly those steps is what makes the TensorFlow model
agree with onnxruntime to the last quantization step; a float rebuild would drift by several
steps per layer. The graph is read with the ``onnx`` package, its weights are dequantized once
here (per-channel int8 -> float32), and each node becomes the TensorFlow op of the same meaning.

Only the op set of the two pinned graphs is supported; any other op, or a layout change this
module does not know, raises ``OnnxGraphError`` so a different graph cannot load by accident.

Layout: the graphs take NHWC images, transpose them to NCHW, and work NCHW. TensorFlow's CPU
convolutions want NHWC, so every tensor is kept NHWC and tagged with the layout the ONNX graph
believes it has; a Transpose that only swaps between the two becomes a re-tag, and NCHW
constants, pads and scales are permuted instead of the data. Shapes are free: the networks are
fully convolutional, so the 384x384 of the ONNX input is not imposed (H and W must be multiples
of 4 for the transformer: two stride-2 convolutions, two 2x upsamplings).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

TO_NCHW = (0, 3, 1, 2)
TO_NHWC = (0, 2, 3, 1)


class OnnxGraphError(RuntimeError):
    """The ONNX graph uses an op or layout this rebuild does not support."""


@dataclass
class Tensor:
    """A TensorFlow value stored NHWC; ``nchw`` says the ONNX graph sees it as NCHW."""

    value: tf.Tensor
    nchw: bool


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _dequantize(data: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    shape = [1] * data.ndim
    if scale.ndim == 1 and data.ndim > 0:
        shape[axis] = -1
    scale = scale.astype(np.float64).reshape(shape) if scale.ndim else scale.astype(np.float64)
    zero = zero.astype(np.float64).reshape(shape) if zero.ndim else zero.astype(np.float64)
    return ((data.astype(np.float64) - zero) * scale).astype(np.float32)


class OnnxGraph(tf.Module):
    """The graph as a callable: ``graph(*inputs)`` with NHWC float32 inputs -> its first output."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        import onnx
        from onnx import numpy_helper

        super().__init__(name=name)
        model = onnx.load(str(path))
        self.path = Path(path)
        self.ops = Counter(node.op_type for node in model.graph.node)
        unknown = set(self.ops) - set(_OPS)
        if unknown:
            raise OnnxGraphError(f"{path}: unsupported ops {sorted(unknown)}")
        init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in init]
        self.output_name = model.graph.output[0].name
        self.nodes = []
        constants: dict[str, np.ndarray] = dict(init)
        for node in model.graph.node:
            # Dequantized weights and biases are constants: fold them once, here.
            if node.op_type == "DequantizeLinear" and node.input[0] in init:
                data, scale, zero = (constants[n] for n in node.input[:3])
                axis = _attrs(node).get("axis", 1)
                constants[node.output[0]] = _dequantize(data, scale, zero, axis)
                continue
            self.nodes.append((node.op_type, list(node.input), list(node.output), _attrs(node)))
        self.constants = constants

    def __call__(self, *inputs: tf.Tensor) -> tf.Tensor:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{self.path.name} takes {len(self.input_names)} inputs")
        values: dict[str, Tensor] = {
            name: Tensor(tf.convert_to_tensor(x, tf.float32), False)
            for name, x in zip(self.input_names, inputs, strict=True)
        }
        for op, ins, outs, attrs in self.nodes:
            args = [values[n] if n in values else self.constants[n] for n in ins if n]
            values[outs[0]] = _OPS[op](args, attrs, ins, self.constants)
        out = values[self.output_name]
        if out.nchw:
            raise OnnxGraphError(f"{self.path.name}: output left in NCHW")
        return out.value


def _layout_of(args) -> bool:
    tagged = [a.nchw for a in args if isinstance(a, Tensor)]
    if len(set(tagged)) > 1:
        raise OnnxGraphError("an elementwise op mixes NCHW and NHWC tensors")
    return tagged[0]


def _const(value: np.ndarray, nchw: bool) -> tf.Tensor:
    """A broadcastable constant in the storage layout of the tensor it meets."""
    value = np.asarray(value, dtype=np.float32)
    if value.size == 1:
        return tf.constant(value.reshape(()))
    if nchw and value.ndim == 4:
        value = value.transpose(TO_NHWC)
    elif nchw and value.ndim == 3:
        value = value.transpose(1, 2, 0)
    elif nchw:
        raise OnnxGraphError(f"cannot broadcast a constant of shape {value.shape} in NCHW")
    return tf.constant(value)


def _elementwise(fn):
    def op(args, attrs, names, constants):
        nchw = _layout_of(args)
        operands = [a.value if isinstance(a, Tensor) else _const(a, nchw) for a in args]
        return Tensor(fn(*operands), nchw)

    return op


def _unary(fn):
    def op(args, attrs, names, constants):
        return Tensor(fn(args[0].value), args[0].nchw)

    return op


def _quantize(args, attrs, names, constants):
    x, scale, zero = args[0], args[1], args[2]
    if np.ndim(scale) != 0 or np.ndim(zero) != 0 or zero.dtype != np.int8:
        raise OnnxGraphError("only per-tensor int8 activation quantization is supported")
    q = tf.clip_by_value(tf.round(x.value / float(scale)) + float(zero), -128.0, 127.0)
    return Tensor(q, x.nchw)  # ONNX rounds half to even, as tf.round does


def _dequantize_op(args, attrs, names, constants):
    x, scale, zero = args[0], args[1], args[2]
    if np.ndim(scale) != 0 or np.ndim(zero) != 0:
        raise OnnxGraphError("only per-tensor activation dequantization is supported")
    return Tensor((x.value - float(zero)) * float(scale), x.nchw)


def _transpose(args, attrs, names, constants):
    x, perm = args[0], tuple(attrs["perm"])
    if perm == TO_NCHW and not x.nchw:
        return Tensor(x.value, True)
    if perm == TO_NHWC and x.nchw:
        return Tensor(x.value, False)
    raise OnnxGraphError(f"unsupported transpose {perm}")


def _reshape(args, attrs, names, constants):
    """Only (1, C, 1, 1) <-> (1, 1, 1, C): a channel vector changing its ONNX layout."""
    x, shape = args[0], [int(v) for v in args[1]]
    if len(shape) != 4 or shape[0] != 1 or sorted(shape[1:]).count(1) < 2:
        raise OnnxGraphError(f"unsupported reshape to {shape}")
    channels = max(shape[1:])
    value = tf.reshape(x.value, (-1, 1, 1, channels))
    return Tensor(value, x.nchw if channels == 1 else shape[1] == channels)


def _conv(args, attrs, names, constants):
    x, kernel = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    if not x.nchw:
        raise OnnxGraphError("Conv on an NHWC tensor")
    if tuple(attrs.get("dilations", (1, 1))) != (1, 1):
        raise OnnxGraphError("dilated convolutions are not supported")
    top, left, bottom, right = attrs.get("pads", (0, 0, 0, 0))
    stride = tuple(attrs.get("strides", (1, 1)))
    value = x.value
    if top or left or bottom or right:
        value = tf.pad(value, [[0, 0], [top, bottom], [left, right], [0, 0]])
    group = attrs.get("group", 1)
    out_channels, in_per_group = kernel.shape[:2]
    if group == 1:
        filters = tf.constant(kernel.transpose(2, 3, 1, 0))  # OIHW -> HWIO
        value = tf.nn.conv2d(value, filters, (1, *stride, 1), "VALID")
    elif in_per_group == 1 and group == out_channels:
        filters = tf.constant(kernel.transpose(2, 3, 0, 1))  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        value = tf.nn.depthwise_conv2d(value, filters, (1, *stride, 1), "VALID")
    else:
        raise OnnxGraphError(f"grouped convolution with group={group} is not supported")
    if bias is not None:
        value = value + tf.constant(bias.astype(np.float32))
    return Tensor(value, True)


def _pad(args, attrs, names, constants):
    x, pads = args[0], [int(v) for v in args[1]]
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "reflect" or len(pads) != 8:
        raise OnnxGraphError(f"unsupported pad mode {mode}")
    begin, end = pads[:4], pads[4:]
    order = TO_NHWC if x.nchw else (0, 1, 2, 3)  # ONNX axis of each stored (NHWC) axis
    paddings = [[begin[order[i]], end[order[i]]] for i in range(4)]
    if paddings[0] != [0, 0] or paddings[3] != [0, 0]:
        raise OnnxGraphError("padding of the batch or channel axis")
    return Tensor(tf.pad(x.value, paddings, mode="REFLECT"), x.nchw)


def _resize(args, attrs, names, constants):
    x = args[0]
    scales = [float(v) for v in args[2]] if len(args) > 2 else []
    mode = attrs.get("mode", b"nearest")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "nearest" or not x.nchw:
        raise OnnxGraphError("only nearest-neighbour resizing of NCHW tensors is supported")
    if scales == [1.0, 1.0, 1.0, 1.0]:
        return x
    if scales != [1.0, 1.0, 2.0, 2.0]:
        raise OnnxGraphError(f"unsupported resize scales {scales}")
    # asymmetric + floor nearest at scale 2: output pixel (i, j) = input (i // 2, j // 2).
    value = tf.repeat(tf.repeat(x.value, 2, axis=1), 2, axis=2)
    return Tensor(value, True)


def _global_average(args, attrs, names, constants):
    x = args[0]
    if not x.nchw:
        raise OnnxGraphError("GlobalAveragePool on an NHWC tensor")
    return Tensor(tf.reduce_mean(x.value, axis=(1, 2), keepdims=True), True)


def _clip(args, attrs, names, constants):
    low, high = float(args[1]), float(args[2])
    return Tensor(tf.clip_by_value(args[0].value, low, high), args[0].nchw)


_OPS = {
    "QuantizeLinear": _quantize,
    "DequantizeLinear": _dequantize_op,
    "Transpose": _transpose,
    "Reshape": _reshape,
    "Conv": _conv,
    "Pad": _pad,
    "Resize": _resize,
    "GlobalAveragePool": _global_average,
    "Clip": _clip,
    "Add": _elementwise(tf.add),
    "Sub": _elementwise(tf.subtract),
    "Mul": _elementwise(tf.multiply),
    "Relu": _unary(tf.nn.relu),
    "Sigmoid": _unary(tf.sigmoid),
    "Sqrt": _unary(tf.sqrt),
    "Reciprocal": _unary(tf.math.reciprocal),
}
