"""A reader for dlib's binary serialization format, enough to take a dlib DNN apart.

dlib writes a network by recursion: every ``add_layer`` writes a version number, then its whole
sub-network, then its own layer details. So the bytes hold the outermost versions first and the
layer details innermost-first, i.e. in forward order (input layer first, then the first conv, ...).
The reader mirrors that recursion and returns the layers in forward order.

Encodings, as implemented in dlib/serialize.h, dlib/float_details.h and dlib/dnn/tensor.h (the
comments in serialize.h disagree with its code in places; the code is what is followed here):

- integers: one control byte (bit 7: negative; low 4 bits: number of value bytes), then the
  absolute value in that many little-endian bytes;
- floats/doubles: ``float_details``: the int64 mantissa, THEN the int16 exponent, both as integers
  above; value = mantissa * 2**exponent, exponents 32000/32001/32002 mean +inf/-inf/NaN;
- bool: the ASCII byte ``'1'`` or ``'0'``;
- std::string: its length as an integer, then the raw bytes;
- resizable_tensor: version (1 = every value as a dlib float, 2 = raw little-endian float32), then
  num_samples, k, nr, nc, then the values in NCHW order;
- alias_tensor (a view into a layer's flat ``params``): version 1 and its four dimensions.

Tag and skip layers (``add_tag_layer``/``add_skip_layer``) serialize as a bare version 1 and their
sub-network, so they cannot be told apart in the bytes; they are reported as ``tag_or_skip``.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_FLOAT_SPECIALS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}

CONV_MODE = 0
"""``layer_mode`` of affine_/bn_ layers that hold one gamma/beta per channel."""

FaceResNetStage = tuple[int, int, bool]
"""(filters, residual blocks without downsampling, whether the stage starts with a residual_down)."""

FACE_RESNET_STAGES: tuple[FaceResNetStage, ...] = (
    (32, 3, False),  # alevel4
    (64, 3, True),  # alevel3
    (128, 2, True),  # alevel2
    (256, 2, True),  # alevel1
    (256, 0, True),  # alevel0
)
"""The residual stages of dlib's face recognition ResNet (``anet_type`` in
examples/dnn_face_recognition_ex.cpp), input side first. One description used both to check a
parsed file and to build the Keras model, so the two cannot drift apart."""


class DlibFormatError(ValueError):
    """The bytes are not the dlib object expected at this position."""


@dataclass
class Layer:
    """One layer of a parsed network, in forward order."""

    kind: str
    """dlib's name for it without the version suffix: con, affine, relu, max_pool, avg_pool,
    add_prev, fc, tag_or_skip, or input_rgb_image_sized."""
    attrs: dict[str, Any] = field(default_factory=dict)
    """Hyper-parameters as written in the file (num_filters, nr, nc, stride_y, padding_y, ...)."""
    params: dict[str, np.ndarray] = field(default_factory=dict)
    """Learned float32 tensors in dlib's own layout (conv filters OIHW, fc weights in x out)."""


@dataclass
class Network:
    """A parsed dlib network: its loss layer's settings and every layer in forward order."""

    loss: str
    loss_attrs: dict[str, float]
    layers: list[Layer]

    def of_kind(self, kind: str) -> list[Layer]:
        return [layer for layer in self.layers if layer.kind == kind]


class Reader:
    """A cursor over the bytes of one serialized object, with dlib's primitive decoders."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def _take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of data at byte {self.pos} (wanted {n} bytes)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def at_end(self) -> bool:
        return self.pos == len(self.data)

    def int(self) -> int:
        """A dlib integer: control byte (sign bit 0x80, byte count in the low nibble), LE bytes."""
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise DlibFormatError(
                f"bad integer control byte 0x{control:02x} at byte {self.pos - 1}"
            )
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        """A dlib float/double: int64 mantissa then int16 exponent (float_details)."""
        mantissa = self.int()
        exponent = self.int()
        if exponent in _FLOAT_SPECIALS:
            return _FLOAT_SPECIALS[exponent]
        return math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        byte = self._take(1)[0]
        if byte not in (ord("0"), ord("1")):
            raise DlibFormatError(f"bad bool byte 0x{byte:02x} at byte {self.pos - 1}")
        return byte == ord("1")

    def string(self) -> str:
        return bytes(self._take(self.int())).decode("latin-1")

    def peek_string(self) -> str | None:
        """The string starting here, or None if what follows cannot be one; the cursor stays."""
        start = self.pos
        try:
            length = self.int()
            if not 0 < length < 64:
                return None
            return bytes(self._take(length)).decode("ascii")
        except (DlibFormatError, UnicodeDecodeError):
            return None
        finally:
            self.pos = start

    def tensor(self) -> np.ndarray:
        """A resizable_tensor as a float32 array of shape (num_samples, k, nr, nc)."""
        version = self.int()
        shape = tuple(self.int() for _ in range(4))
        count = math.prod(shape)
        if version == 2:
            values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        elif version == 1:
            values = np.array([self.float() for _ in range(count)], dtype=np.float32)
        else:
            raise DlibFormatError(f"unknown resizable_tensor version {version}")
        return values.reshape(shape)

    def alias_tensor(self) -> tuple[builtins.int, builtins.int, builtins.int, builtins.int]:
        """An alias_tensor: only its shape (num_samples, k, nr, nc); the data is in ``params``."""
        version = self.int()
        if version != 1:
            raise DlibFormatError(f"unknown alias_tensor version {version}")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


def _split(flat: np.ndarray, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    """Cut a layer's flat ``params`` into the alias tensors that view it, in order."""
    flat = flat.reshape(-1)
    sizes = [math.prod(shape) for shape in shapes]
    if sum(sizes) != flat.size:
        raise DlibFormatError(f"params hold {flat.size} values but the views need {sum(sizes)}")
    parts, offset = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        parts.append(flat[offset : offset + size].reshape(shape))
        offset += size
    return parts


def _read_con(r: Reader) -> Layer:
    params = r.tensor()
    attrs = {
        "num_filters": r.int(),
        "nr": r.int(),
        "nc": r.int(),
        "stride_y": r.int(),
        "stride_x": r.int(),
        "padding_y": r.int(),
        "padding_x": r.int(),
    }
    filters_shape, biases_shape = r.alias_tensor(), r.alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers: training only
        r.float()
    filters, biases = _split(params, filters_shape, biases_shape)
    return Layer("con", attrs, {"filters": filters, "biases": biases.reshape(-1)})


def _read_affine(r: Reader) -> Layer:
    params = r.tensor()
    gamma_shape, beta_shape = r.alias_tensor(), r.alias_tensor()
    mode = r.int()
    gamma, beta = _split(params, gamma_shape, beta_shape)
    return Layer("affine", {"mode": mode}, {"gamma": gamma.reshape(-1), "beta": beta.reshape(-1)})


def _read_bn_as_affine(r: Reader, mode: int) -> Layer:
    """A batch-norm layer folded into the affine layer dlib itself replaces it with at inference."""
    params = r.tensor()
    gamma_shape, beta_shape = r.alias_tensor(), r.alias_tensor()
    r.tensor(), r.tensor()  # means, invstds of the last training batch
    running_means, running_variances = r.tensor().reshape(-1), r.tensor().reshape(-1)
    r.int(), r.int()  # num_updates, running_stats_window_size
    for _ in range(4):
        r.float()
    eps = r.float()
    gamma, beta = (p.reshape(-1) for p in _split(params, gamma_shape, beta_shape))
    scale = (gamma / np.sqrt(running_variances + np.float32(eps))).astype(np.float32)
    shift = (beta - scale * running_means).astype(np.float32)
    return Layer("affine", {"mode": mode}, {"gamma": scale, "beta": shift})


def _read_pool(kind: str) -> Callable[[Reader], Layer]:
    def read(r: Reader) -> Layer:
        keys = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        return Layer(kind, {key: r.int() for key in keys})

    return read


def _read_fc(r: Reader) -> Layer:
    num_outputs, num_inputs = r.int(), r.int()
    params = r.tensor()
    weights_shape, biases_shape = r.alias_tensor(), r.alias_tensor()
    bias_mode = r.int()
    for _ in range(4):
        r.float()
    has_bias = bias_mode == 0  # FC_HAS_BIAS
    shapes = (weights_shape, biases_shape) if has_bias else (weights_shape,)
    parts = _split(params, *shapes)
    tensors: dict[str, np.ndarray] = {"weights": parts[0].reshape(num_inputs, num_outputs)}
    if has_bias:
        tensors["biases"] = parts[1].reshape(-1)
    attrs = {"num_outputs": num_outputs, "num_inputs": num_inputs, "has_bias": has_bias}
    return Layer("fc", attrs, tensors)


def _read_input_rgb_image_sized(r: Reader) -> Layer:
    mean = np.array([r.float(), r.float(), r.float()], dtype=np.float32)
    rows, cols = r.int(), r.int()
    return Layer("input_rgb_image_sized", {"nr": rows, "nc": cols}, {"mean_rgb": mean})


_DETAIL_READERS = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "bn_con2": lambda r: _read_bn_as_affine(r, CONV_MODE),
    "bn_fc2": lambda r: _read_bn_as_affine(r, 1),
    "relu_": lambda r: Layer("relu"),
    "add_prev_": lambda r: Layer("add_prev"),
    "max_pool_2": _read_pool("max_pool"),
    "avg_pool_2": _read_pool("avg_pool"),
    "fc_2": _read_fc,
}

_INPUT_READERS = {"input_rgb_image_sized": _read_input_rgb_image_sized}


def _read_layer_details(r: Reader) -> Layer:
    name = r.string()
    reader = _DETAIL_READERS.get(name)
    if reader is None:
        raise DlibFormatError(f"unsupported layer type {name!r} at byte {r.pos}")
    return reader(r)


def _skip_add_layer_state(r: Reader, version: int, *, input_layer: bool) -> None:
    """Skip the training-time state add_layer writes after its details (flags and buffers)."""
    r.bool(), r.bool(), r.bool()  # setup called, gradient stale, output getters disabled
    r.tensor(), r.tensor()  # x_grad, cached_output
    if input_layer:
        r.tensor()  # grad_final
        if version >= 3:
            r.int()  # _sample_expansion_factor
    elif version >= 2:
        r.tensor()  # params_grad


def _read_subnet(r: Reader, out: list[Layer]) -> None:
    """Read one (sub-)network and append its layers to ``out`` in forward order."""
    version = r.int()
    following = r.peek_string()
    if following is not None and following in _INPUT_READERS:
        # add_layer<details, INPUT_LAYER>: the input layer, then the first layer's details.
        if version not in (2, 3):
            raise DlibFormatError(f"unknown add_layer version {version} over an input layer")
        r.string()
        out.append(_INPUT_READERS[following](r))
        out.append(_read_layer_details(r))
        _skip_add_layer_state(r, version, input_layer=True)
    elif version == 1:
        _read_subnet(r, out)  # add_tag_layer or add_skip_layer: nothing of its own
        out.append(Layer("tag_or_skip"))
    elif version == 2:
        _read_subnet(r, out)
        out.append(_read_layer_details(r))
        _skip_add_layer_state(r, version, input_layer=False)
    else:
        raise DlibFormatError(f"unknown layer version {version} at byte {r.pos}")


def read_network(data: bytes) -> Network:
    """Parse a whole ``add_loss_layer`` network as written by ``dlib::serialize(net)``."""
    r = Reader(data)
    version = r.int()
    if version != 1:
        raise DlibFormatError(f"expected an add_loss_layer (version 1), found version {version}")
    loss = r.string()
    if loss != "loss_metric_2":
        raise DlibFormatError(f"unsupported loss layer {loss!r}")
    loss_attrs = {"margin": r.float(), "distance_threshold": r.float()}
    layers: list[Layer] = []
    _read_subnet(r, layers)
    if not r.at_end():
        raise DlibFormatError(f"{len(r.data) - r.pos} unread bytes after the network")
    return Network(loss, loss_attrs, layers)


def read_network_file(path: Path) -> Network:
    return read_network(Path(path).read_bytes())


def _con(filters: int, size: int, stride: int) -> tuple[str, dict[str, int]]:
    pad = 0 if stride != 1 else size // 2  # con_'s default padding rule
    return "con", {
        "num_filters": filters,
        "nr": size,
        "nc": size,
        "stride_y": stride,
        "stride_x": stride,
        "padding_y": pad,
        "padding_x": pad,
    }


def _pool(kind: str, size: int, stride: int) -> tuple[str, dict[str, int]]:
    pad = 0 if stride != 1 else size // 2  # same default rule as con_
    keys = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    return kind, dict(zip(keys, (size, size, stride, stride, pad, pad), strict=True))


def _residual(filters: int, down: bool) -> list[tuple[str, dict[str, int]]]:
    """ares / ares_down of the example, in forward order."""
    block = [
        ("tag_or_skip", {}),  # tag1
        _con(filters, 3, 2 if down else 1),
        ("affine", {"mode": CONV_MODE}),
        ("relu", {}),
        _con(filters, 3, 1),
        ("affine", {"mode": CONV_MODE}),
    ]
    if down:  # tag2 on the block, skip1 back to its input, avg_pool that
        block += [("tag_or_skip", {}), ("tag_or_skip", {}), _pool("avg_pool", 2, 2)]
    return block + [("add_prev", {}), ("relu", {})]


def face_resnet_layout(
    stages: tuple[FaceResNetStage, ...] = FACE_RESNET_STAGES, size: int = 150
) -> list[tuple[str, dict[str, int]]]:
    """(kind, attrs) of every layer of the face ResNet in forward order, as a parsed file must show."""
    layout: list[tuple[str, dict[str, int]]] = [
        ("input_rgb_image_sized", {"nr": size, "nc": size}),
        _con(32, 7, 2),
        ("affine", {"mode": CONV_MODE}),
        ("relu", {}),
        _pool("max_pool", 3, 2),
    ]
    for filters, blocks, down in stages:
        if down:
            layout += _residual(filters, down=True)
        for _ in range(blocks):
            layout += _residual(filters, down=False)
    layout += [_pool("avg_pool", 0, 1), ("fc", {"num_outputs": 128, "has_bias": False})]
    return layout


def check_face_resnet(net: Network) -> None:
    """Raise DlibFormatError unless ``net`` has exactly the face ResNet's layers and settings."""
    expected = face_resnet_layout()
    if len(net.layers) != len(expected):
        raise DlibFormatError(f"expected {len(expected)} layers, the file has {len(net.layers)}")
    for index, (layer, (kind, attrs)) in enumerate(zip(net.layers, expected, strict=True)):
        found = {key: layer.attrs.get(key) for key in attrs}
        if layer.kind != kind or found != attrs:
            raise DlibFormatError(
                f"layer {index}: expected {kind} {attrs}, found {layer.kind} {layer.attrs}"
            )
