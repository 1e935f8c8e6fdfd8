"""Incremental inference (Krypton's IVM): the cut's geometry by hand, the cut rules, and
scores equal to full passes for every window position on a varied CNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from engine.models.incremental import MIN_SAVING, Cut, IncrementalRunner, find_cut
from lantern_testing.models import conv_classifier, linear_classifier, load_tiny

SIZE = 32


class Graph:
    """A small graph builder: nodes, initializers (seeded random weights), one input."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: NDArray[np.generic] | np.generic) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, name: str, *shape: int) -> str:
        fan_in = int(np.prod(shape[1:]))
        w = self.rng.normal(size=shape) / np.sqrt(fan_in)
        return self.const(name, w.astype(np.float32))

    def node(self, op: str, inputs: list[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def head(self, x: str, channels: int, classes: int = 5) -> None:
        """GlobalAveragePool -> Flatten -> Gemm to ``logits``."""
        self.node("GlobalAveragePool", [x], "gap")
        self.node("Flatten", ["gap"], "flat")
        self.node("Gemm", ["flat", self.weight("fc_w", classes, channels)], "logits", transB=1)

    def model(
        self, height: int = SIZE, width: int = SIZE, batch: int | str = "N", classes: int = 5
    ) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "g",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, height, width])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
            initializer=self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def cut_at(
    model: onnx.ModelProto, tensor: str | None, window: tuple[int, int] = (5, 5), **kw: float
) -> Cut | None:
    h, w = (int(d.dim_value) for d in model.graph.input[0].type.tensor_type.shape.dim[2:])
    return find_cut(model, "input", "logits", (h, w), window, tensor=tensor, **kw)


# -- geometry by hand ------------------------------------------------------------------


def two_convs(height: int, width: int) -> onnx.ModelProto:
    """input -> Conv k3 s2 pads (top 0, left 1, bottom 1, right 1) -> Relu
    -> Conv k3 s1 pads 1 -> T -> GlobalAveragePool -> Flatten -> Gemm."""
    g = Graph()
    g.node("Conv", ["input", g.weight("w1", 4, 3, 3, 3)], "c1", strides=[2, 2], pads=[0, 1, 1, 1])
    g.node("Relu", ["c1"], "r1")
    g.node("Conv", ["r1", g.weight("w2", 4, 4, 3, 3)], "T", pads=[1, 1, 1, 1])
    g.head("T", 4)
    return g.model(height, width)


def test_geometry_and_crop_by_hand() -> None:
    # Composition: J' = s·J, L' = pad_begin·J + L, R' = (extent − 1 − pad_begin)·J + R,
    # from the input's J = 1, L = R = 0.
    # rows: c1: J = 2, L = 0·1 + 0 = 0, R = (3 − 1 − 0)·1 + 0 = 2
    #       T:  J = 2, L = 1·2 + 0 = 2, R = (3 − 1 − 1)·2 + 2 = 4
    # cols: c1: J = 2, L = 1·1 + 0 = 1, R = (3 − 1 − 1)·1 + 0 = 1
    #       T:  J = 2, L = 1·2 + 1 = 3, R = (3 − 1 − 1)·2 + 1 = 3
    # T's grid: rows (32 + 0 + 1 − 3) // 2 + 1 = 16, cols (24 + 1 + 1 − 3) // 2 + 1 = 12
    # (T then keeps the size: k3 s1 pads 1).
    #
    # Crop, window (5, 7). A window at offset y (mod J) changes units t with
    # t·J + R >= y and t·J − L <= y + k − 1; the crop starts at the multiple of J at or
    # before t0·J − L and ends at t1·J + R.
    # rows (k 5, J 2, L 2, R 4):
    #   y = 0: t0 = ceil(−4/2) = −2, t1 = (0 + 4 + 2) // 2 = 3, start = 2·floor(−6/2) = −6,
    #          need = 3·2 + 4 + 1 + 6 = 17
    #   y = 1: t0 = ceil(−3/2) = −1, t1 = (1 + 4 + 2) // 2 = 3, start = 2·floor(−4/2) = −4,
    #          need = 6 + 4 + 1 + 4 = 15
    #   17, padded to a length ≡ 32 (mod 2): 18
    # cols (k 7, J 2, L 3, R 3):
    #   y = 0: t0 = ceil(−3/2) = −1, t1 = (0 + 6 + 3) // 2 = 4, start = 2·floor(−5/2) = −6,
    #          need = 8 + 3 + 1 + 6 = 18
    #   y = 1: t0 = ceil(−2/2) = −1, t1 = (1 + 6 + 3) // 2 = 5, start = −6,
    #          need = 10 + 3 + 1 + 6 = 20
    #   20 (≡ 24 mod 2)
    model = two_convs(32, 24)
    cut = find_cut(model, "input", "logits", (32, 24), (5, 7), tensor="T", min_saving=-1.0)
    assert cut is not None
    assert cut.tensor == "T"
    assert cut.stride == (2, 2)
    assert cut.lo == (2, 3)
    assert cut.hi == (4, 3)
    assert cut.grid == (16, 12)
    assert cut.crop == (18, 20)
    assert cut.prefix_nodes == (0, 1, 2)
    c1 = find_cut(model, "input", "logits", (32, 24), (5, 7), tensor="c1", min_saving=-1.0)
    assert c1 is not None
    assert (c1.stride, c1.lo, c1.hi, c1.grid) == ((2, 2), (0, 1), (2, 1), (16, 12))

    runner = IncrementalRunner(model, cut, "input", "logits", (32, 24), 2)
    boxes = np.array(
        [
            # rows 10..14: units t with 2t + 4 >= 10 and 2t − 2 <= 14: t in [3, 9); the crop
            # starts at 2·3 − 2 = 4 (<= 32 − 18 = 14). cols 8..14: 2t + 3 >= 8 and
            # 2t − 3 <= 14: t in [3, 9); the crop starts at 2·floor((6 − 3)/2) = 2.
            [10, 8, 15, 15],
            # the top-left corner: rows 0..4: 2t − 2 <= 4: t in [0, 4); cols 0..6:
            # 2t − 3 <= 6: t in [0, 5); the crop at (0, 0)
            [0, 0, 5, 7],
            # the bottom-right corner: rows 27..31: t >= ceil(23/2) = 12, up to the grid's 16;
            # cols 17..23: t >= 7, up to 12; the crops meet the border: 32 − 18, 24 − 20
            [27, 17, 32, 24],
        ]
    )
    assert runner.units(boxes).tolist() == [[3, 3, 9, 9], [0, 0, 4, 5], [12, 7, 16, 12]]
    assert runner.origins(boxes).tolist() == [[4, 2], [0, 0], [14, 4]]


# -- exactness on a varied CNN ---------------------------------------------------------


def varied_cnn() -> onnx.ModelProto:
    """65×71 (odd and non-square) -> Conv s2 (asymmetric pads) -> BatchNormalization
    -> Clip(0, 6) -> depthwise Conv + residual Add -> MaxPool -> two Convs (one with
    asymmetric pads) concatenated on channels -> Mul by a per-channel constant -> Conv s2
    -> Relu -> GlobalAveragePool -> Flatten -> Gemm."""
    g = Graph(seed=1)
    rng = g.rng
    b1 = g.const("b1", rng.normal(size=8).astype(np.float32))
    g.node(
        "Conv",
        ["input", g.weight("w1", 8, 3, 3, 3), b1],
        "c1",
        strides=[2, 2],
        pads=[0, 1, 1, 0],
    )  # 32×35, J 2
    bn = [
        g.const("bn_scale", rng.uniform(0.5, 1.5, 8).astype(np.float32)),
        g.const("bn_bias", rng.normal(size=8).astype(np.float32)),
        g.const("bn_mean", rng.normal(size=8).astype(np.float32)),
        g.const("bn_var", rng.uniform(0.5, 1.5, 8).astype(np.float32)),
    ]
    g.node("BatchNormalization", ["c1", *bn], "bn")
    g.node("Clip", ["bn", g.const("zero", np.float32(0)), g.const("six", np.float32(6))], "a1")
    g.node("Conv", ["a1", g.weight("wdw", 8, 1, 3, 3)], "dw", group=8, pads=[1, 1, 1, 1])
    g.node("Add", ["a1", "dw"], "res")
    g.node("MaxPool", ["res"], "mp", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    g.node("Conv", ["mp", g.weight("wb1", 4, 8, 1, 1)], "br1")  # 16×18, J 4
    g.node("Conv", ["mp", g.weight("wb2", 4, 8, 3, 3)], "br2", pads=[1, 0, 1, 2])
    g.node("Concat", ["br1", "br2"], "cat", axis=1)
    gain = g.const("gain", rng.uniform(0.5, 2, (8, 1, 1)).astype(np.float32))
    g.node("Mul", ["cat", gain], "gain_out")
    w3 = g.weight("w3", 8, 8, 3, 3)
    g.node("Conv", ["gain_out", w3], "c3", strides=[2, 2], pads=[1, 1, 1, 1])  # 8×9, J 8
    g.node("Relu", ["c3"], "a3")
    g.head("a3", 8)
    return g.model(H, W)


#: The cuts of `varied_cnn`: every tensor all paths pass through with a local prefix. Not
#: "dw" (the residual Add also reads "a1"), nor one branch of the Concat; "gap" and after
#: are not local.
VARIED_CUTS = ["c1", "bn", "a1", "res", "mp", "cat", "gain_out", "c3", "a3"]
H, W = 65, 71
WINDOW, STRIDE = 5, 3


def occluded(
    x0: NDArray[np.float32], xb: NDArray[np.float32]
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Every window position (5×5, stride 3: rows 0, 3, ..., 60, columns 0, 3, ..., 66; the
    last ones touch the bottom and right borders): the images and their boxes."""
    ys = range(0, H - WINDOW + 1, STRIDE)
    xs = range(0, W - WINDOW + 1, STRIDE)
    assert ys[-1] + WINDOW == H and xs[-1] + WINDOW == W
    images, boxes = [], []
    for y in ys:
        for x in xs:
            img = x0.copy()
            img[:, :, y : y + WINDOW, x : x + WINDOW] = xb[:, :, y : y + WINDOW, x : x + WINDOW]
            images.append(img[0])
            boxes.append([y, x, y + WINDOW, x + WINDOW])
    return np.stack(images), np.asarray(boxes, dtype=np.int64)


def incremental_scores(
    runner: IncrementalRunner,
    x0: NDArray[np.float32],
    images: NDArray[np.float32],
    boxes: NDArray[np.int64],
) -> NDArray[np.float32]:
    """All images in one call, each through its crop at ``runner.origins``."""
    origins = runner.origins(boxes)
    hc, wc = runner.cut.crop
    assert (origins >= 0).all()
    assert (origins[:, 0] + hc <= H).all() and (origins[:, 1] + wc <= W).all()
    assert (origins % np.asarray(runner.cut.stride) == 0).all()
    crops = np.stack(
        [img[:, oy : oy + hc, ox : ox + wc] for img, (oy, ox) in zip(images, origins, strict=True)]
    )
    return runner.scores(runner.reference(x0), crops, boxes, origins)


BASELINES = {
    "zero": lambda x0: np.zeros_like(x0),
    "noise": lambda x0: np.random.default_rng(8).normal(size=x0.shape).astype(np.float32),
}


def check_exact(model: onnx.ModelProto, tensor: str | None, min_saving: float) -> str:
    """The runner's scores at the cut equal full passes for every window position."""
    cut = find_cut(model, "input", "logits", (H, W), (WINDOW, WINDOW), tensor, min_saving)
    assert cut is not None
    # the image is large enough that every cut crops, so a crop too small would show
    assert cut.crop[0] < H and cut.crop[1] < W
    runner = IncrementalRunner(model, cut, "input", "logits", (H, W), 2)
    full = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x0 = np.random.default_rng(7).uniform(-2, 2, (1, 3, H, W)).astype(np.float32)
    for name, baseline in BASELINES.items():
        images, boxes = occluded(x0, baseline(x0))
        expected = full.run(["logits"], {"input": images})[0]
        got = incremental_scores(runner, x0, images, boxes)
        assert got.shape == expected.shape == (len(boxes), 5)
        assert np.abs(expected - full.run(["logits"], {"input": x0})[0]).max() > 1e-2
        np.testing.assert_allclose(
            got, expected, rtol=1e-5, atol=1e-5, err_msg=f"cut {cut.tensor}, baseline {name}"
        )
    return cut.tensor


def test_every_window_is_exact_at_the_chosen_cut() -> None:
    model = varied_cnn()
    assert cut_at(model, None) is not None  # worth it at the default MIN_SAVING
    assert check_exact(model, None, MIN_SAVING) in VARIED_CUTS


def test_the_cuts_of_the_varied_cnn() -> None:
    model = varied_cnn()
    outputs = [o for node in model.graph.node for o in node.output]
    cuts = [t for t in outputs if cut_at(model, t, min_saving=-1.0) is not None]
    assert cuts == VARIED_CUTS


@pytest.mark.parametrize("tensor", VARIED_CUTS)
def test_every_window_is_exact_at_every_cut(tensor: str) -> None:
    assert check_exact(varied_cnn(), tensor, -1.0) == tensor


# -- cut rules ---------------------------------------------------------------------------


def test_a_skip_connection_past_the_tensor_is_no_cut() -> None:
    g = Graph()
    g.node("Conv", ["input", g.weight("w1", 4, 3, 3, 3)], "a", pads=[1, 1, 1, 1])
    g.node("Conv", ["a", g.weight("w2", 4, 4, 3, 3)], "T", pads=[1, 1, 1, 1])
    g.node("Add", ["T", "a"], "sum")  # "a" bypasses T
    g.head("sum", 4)
    model = g.model()
    assert cut_at(model, "T", min_saving=-1.0) is None
    assert cut_at(model, "a", min_saving=-1.0) is not None
    assert cut_at(model, "sum", min_saving=-1.0) is not None
    # the input itself read past T
    g = Graph()
    g.node("Conv", ["input", g.weight("w1", 3, 3, 3, 3)], "T", pads=[1, 1, 1, 1])
    g.node("Add", ["T", "input"], "sum")
    g.head("sum", 3)
    model = g.model()
    assert cut_at(model, "T", min_saving=-1.0) is None
    assert cut_at(model, "sum", min_saving=-1.0) is not None


@pytest.mark.parametrize(
    ("shape", "local"),
    [((1, 4, SIZE, SIZE), False), ((1, 4, 1, SIZE), False), ((4, 1, 1), True), ((), True)],
)
def test_constants_that_vary_over_space_stop_the_prefix(
    shape: tuple[int, ...], local: bool
) -> None:
    g = Graph()
    g.node("Conv", ["input", g.weight("w1", 4, 3, 3, 3)], "a", pads=[1, 1, 1, 1])
    g.node("Add", ["a", g.const("k", g.rng.normal(size=shape).astype(np.float32))], "b")
    g.node("Conv", ["b", g.weight("w2", 4, 4, 3, 3)], "c", pads=[1, 1, 1, 1])
    g.head("c", 4)
    model = g.model()
    assert cut_at(model, "a", min_saving=-1.0) is not None
    assert (cut_at(model, "b", min_saving=-1.0) is not None) == local
    assert (cut_at(model, "c", min_saving=-1.0) is not None) == local


@pytest.mark.parametrize("op", ["Resize", "Reshape"])
def test_resize_and_reshape_stop_the_prefix(op: str) -> None:
    g = Graph()
    g.node("Conv", ["input", g.weight("w1", 4, 3, 3, 3)], "a", pads=[1, 1, 1, 1], strides=[2, 2])
    if op == "Resize":
        scales = g.const("scales", np.array([1, 1, 2, 2], np.float32))
        g.node("Resize", ["a", "", scales], "b", mode="nearest")
    else:
        g.node("Reshape", ["a", g.const("shape", np.array([-1, 4, 16, 16]))], "b")
    g.node("Conv", ["b", g.weight("w2", 4, 4, 3, 3)], "c", pads=[1, 1, 1, 1])
    g.node("Relu", ["c"], "d")
    g.head("d", 4)
    model = g.model()
    assert cut_at(model, "a", min_saving=-1.0) is not None
    for tensor in ("b", "c", "d"):
        assert cut_at(model, tensor, min_saving=-1.0) is None
    cut = cut_at(model, None, min_saving=-1.0)
    assert cut is not None and cut.tensor == "a"


def test_an_operand_broadcast_over_space_stops_the_prefix() -> None:
    # AveragePool with a kernel of all 32 rows (strides 1, ONNX's default) gives a 1×32
    # gate, broadcast over the rows of "a": each unit of "gated" reads its whole column,
    # not [t·J − L, t·J + R], so a window changes every row of it. Taken for element-wise
    # (J 1, R 32 rows as the union with the gate's), "gated" would be cut with a crop of
    # all rows but few columns, and only the rows up to the window's bottom + L pasted.
    g = Graph()
    g.node("Conv", ["input", g.weight("w1", 4, 3, 3, 3)], "a", pads=[1, 1, 1, 1])
    g.node("AveragePool", ["a"], "strip", kernel_shape=[SIZE, 1])  # (N, 4, 1, 32)
    g.node("Sigmoid", ["strip"], "gate")
    g.node("Mul", ["a", "gate"], "gated")
    g.node("Conv", ["gated", g.weight("w2", 4, 4, 3, 3)], "c", pads=[1, 1, 1, 1])
    g.head("c", 4)
    model = g.model()
    for tensor in ("gated", "c"):
        assert cut_at(model, tensor, min_saving=-1.0) is None
    cut = find_cut(model, "input", "logits", (SIZE, SIZE), (4, 4))
    assert cut is not None and cut.tensor == "a"
    # and the cut it takes is exact: a window at the top changes rows far below it
    runner = IncrementalRunner(model, cut, "input", "logits", (SIZE, SIZE), 2)
    x0 = np.random.default_rng(0).uniform(-1, 1, (1, 3, SIZE, SIZE)).astype(np.float32)
    x = x0.copy()
    x[:, :, 0:4, 8:12] = 0.0
    boxes = np.array([[0, 8, 4, 12]])
    origins = runner.origins(boxes)
    (oy, ox), (hc, wc) = origins[0], cut.crop
    crop = x[:, :, oy : oy + hc, ox : ox + wc]
    got = runner.scores(runner.reference(x0), crop, boxes, origins)
    full = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, full.run(["logits"], {"input": x})[0], rtol=1e-5, atol=1e-6)


def test_dynamic_height_and_width_give_no_cut() -> None:
    # shape inference cannot size T (the grid is what the suffix is built for): no cut,
    # even where T's stride is half the image and a unit grid of 1×1 would pass for one
    g = Graph()
    g.node("Conv", ["input", g.weight("w1", 4, 3, 4, 4)], "T", strides=[4, 4])
    g.node("Relu", ["T"], "r")
    g.head("r", 4)
    static = g.model(8, 8)
    assert cut_at(static, "T", window=(1, 1)) is not None  # crop 4 of 8
    dims = static.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    for tensor in ("T", "r", None):
        assert find_cut(static, "input", "logits", (8, 8), (1, 1), tensor, -1.0) is None


def test_min_saving() -> None:
    # the two-conv model on 16×16: at T, window 5 needs 17 rows (see the geometry test)
    # > 16, so the crop is the whole image and saves nothing
    model = two_convs(16, 16)
    assert cut_at(model, "T") is None
    cut = cut_at(model, "T", min_saving=-1.0)
    assert cut is not None
    assert cut.crop == (16, 16) and cut.saving == 0.0
    # a window as large as the image: no cut saves anything
    assert cut_at(model, None, window=(16, 16)) is None
    for tensor in ("c1", "r1", "T"):
        cut = cut_at(model, tensor, window=(16, 16), min_saving=-1.0)
        assert cut is not None and cut.saving == 0.0
    # a small window on a large image saves most of the prefix
    big = two_convs(64, 64)
    cut = cut_at(big, None, window=(2, 2))
    assert cut is not None and cut.tensor == "T"
    assert cut.saving > MIN_SAVING
    assert cut_at(big, None, window=(2, 2), min_saving=0.99) is None


# -- LoadedModel.incremental -----------------------------------------------------------


def test_loaded_model_builds_and_caches_a_runner(tmp_path: Path) -> None:
    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    runner = model.incremental((4, 4))
    assert runner is not None
    assert runner.cut.tensor == "act"  # Conv -> Relu: the Relu's output has the longer prefix
    # J 1, L = R = 1: a window changes the 4 + 2 units it covers or touches, which read
    # 1 more pixel on each side: 4 + 2·2
    assert runner.cut.crop == (8, 8)
    assert model.incremental((4, 4)) is runner
    assert model.incremental((8, 8)) is not runner


def test_loaded_model_keeps_a_few_runners(tmp_path: Path) -> None:
    from engine.models.runtime import INCREMENTAL_RUNNERS

    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    first = model.incremental((1, 1))
    for k in range(2, INCREMENTAL_RUNNERS + 2):
        model.incremental((k, k))
    assert len(model._incremental) == INCREMENTAL_RUNNERS
    assert (1, 1) not in model._incremental  # the oldest went first
    assert model.incremental((1, 1)) is not first  # and is built again


def test_loaded_model_without_a_runner(tmp_path: Path) -> None:
    conv = conv_classifier(SIZE, SIZE, 3)
    labels = ["a", "b", "c"]
    (tmp_path / "nhwc").mkdir()
    nhwc = load_tiny(tmp_path / "nhwc", conv, SIZE, labels, layout="NHWC")
    assert nhwc.incremental((4, 4)) is None  # the same graph as NCHW has a cut (above)
    # a fixed batch size
    fixed = conv_classifier(SIZE, SIZE, 3)
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    fixed.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    (tmp_path / "fixed").mkdir()
    one = load_tiny(tmp_path / "fixed", fixed, SIZE, labels)
    assert one.fixed_batch == 1 and one.incremental((4, 4)) is None
    # no local prefix at all
    (tmp_path / "linear").mkdir()
    w = np.zeros((2, 3, SIZE, SIZE), np.float32)
    flat = load_tiny(tmp_path / "linear", linear_classifier(w), SIZE)
    assert flat.incremental((4, 4)) is None


def test_reference_batches_restore_only_what_was_patched() -> None:
    from engine.models.incremental import Reference

    t0 = np.arange(2 * 4 * 4, dtype=np.float32).reshape(1, 2, 4, 4)
    ref = Reference(t0)
    first = ref.batch(3)
    assert first.shape == (3, 2, 4, 4) and all(np.array_equal(r, t0[0]) for r in first)
    first[1, :, 0:2, 1:3] = -1.0  # what scores() does: patch, then record
    ref.dirty.append((1, 0, 1, 2, 3))
    second = ref.batch(2)  # fewer rows: still views of the same buffer, restored
    assert second.shape == (2, 2, 4, 4)
    assert all(np.array_equal(r, t0[0]) for r in second) and ref.dirty == []
    bigger = ref.batch(5)  # more rows than the buffer: a fresh one
    assert bigger.shape == (5, 2, 4, 4) and all(np.array_equal(r, t0[0]) for r in bigger)
