"""face-api.js's expression net, from its TF.js weights to ONNX, with numpy and onnx only.

The npm package `@vladmandic/face-api` ships the weights (`face_expression_model.bin` and its manifest) but not a
graph: the network is defined in the package's TypeScript (FaceExpressionNet on FaceFeatureExtractor). This
module rebuilds that network as an ONNX graph around the weights, so that onnxruntime runs it like every other
model here, and no TensorFlow is needed. The output is a pure function of the two input files and the pinned onnx
version, so the converted file is checked by sha256 like a downloaded one.

The network, as the package defines it: the 112x112 RGB face minus the mean colour, divided by 255; four dense
blocks of four separable 3x3 convolutions each (the first of each block with stride 2, the very first a plain
convolution), every convolution's input the ReLU of the sum of the block's earlier outputs; a 7x7 average pool;
a fully connected layer to 7 classes; softmax.
"""
from __future__ import annotations

import json

import numpy as np

__all__ = ["EMOTION_LABELS", "read_weights", "expression_net", "convert_expression_net"]

# The order of the net's outputs (FACE_EXPRESSION_LABELS in the package).
EMOTION_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
MEAN_RGB = (122.782, 117.001, 104.298)
INPUT_SIZE = 112
OPSET = 17
# Fixed, so that a conversion gives the same bytes wherever it runs.
PRODUCER = "findface-grpc tfjs.py"


class ConversionError(ValueError):
    """The weights are not those of the network this module builds."""


def read_weights(manifest: bytes, data: bytes) -> dict[str, np.ndarray]:
    """The named float32 arrays of a TF.js weights manifest and its one data file.

    Weights are stored one after the other in manifest order, each as float32, or quantized to uint8 (or uint16)
    with a `scale` and `min`: the value is `q * scale + min`, computed in float32 as TF.js does.
    """
    groups = json.loads(manifest)
    if len(groups) != 1 or len(groups[0].get("paths", ())) != 1:
        raise ConversionError("expected one weights group in one file")
    weights, offset = {}, 0
    for entry in groups[0]["weights"]:
        shape, count = tuple(entry["shape"]), int(np.prod(entry["shape"], dtype=np.int64))
        if entry["dtype"] != "float32":
            raise ConversionError(f"{entry['name']}: dtype {entry['dtype']} is not float32")
        quantization = entry.get("quantization")
        stored = np.dtype("<f4")
        if quantization is not None:
            stored = {"uint8": np.dtype(np.uint8), "uint16": np.dtype("<u2")}.get(quantization["dtype"])
            if stored is None or "scale" not in quantization:
                raise ConversionError(f"{entry['name']}: unsupported quantization {quantization}")
        size = stored.itemsize * count
        if offset + size > len(data):
            raise ConversionError(f"{entry['name']}: the data file ends early")
        values = np.frombuffer(data, stored, count, offset)
        if quantization is not None:
            values = values.astype(np.float32) * np.float32(quantization["scale"]) + np.float32(quantization["min"])
        weights[entry["name"]] = np.asarray(values, np.float32).reshape(shape)
        offset += size
    if offset != len(data):
        raise ConversionError(f"the data file has {len(data) - offset} bytes beyond its weights")
    return weights


class _Graph:
    """Nodes and initializers of the graph being built, named in order."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        from onnx import numpy_helper  # imported here: only fetching converts, and onnx is slow to import

        self._numpy_helper = numpy_helper
        self.weights = weights
        self.used: set[str] = set()
        self.nodes: list = []
        self.initializers: list = []

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self._numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        value = self.weights.get(name)
        if value is None:
            raise ConversionError(f"weight {name} is missing")
        if value.shape != shape:
            raise ConversionError(f"weight {name} has shape {value.shape}, expected {shape}")
        self.used.add(name)
        return value

    def node(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


def _same_pads(size: int, stride: int, kernel: int = 3) -> tuple[list[int], int]:
    """TF's 'same' padding for a square input: the extra pixel of an odd total goes after (bottom, right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    return [before, before, total - before, total - before], out


def _conv(g: _Graph, x: str, prefix: str, c_in: int, c_out: int, stride: int, size: int) -> tuple[str, int]:
    pads, out_size = _same_pads(size, stride)
    filters = g.weight(f"{prefix}/filters", (3, 3, c_in, c_out)).transpose(3, 2, 0, 1)
    bias = g.weight(f"{prefix}/bias", (c_out,))
    w, b = g.constant(f"{prefix}/W", filters), g.constant(f"{prefix}/B", bias)
    return g.node("Conv", [x, w, b], prefix, kernel_shape=[3, 3], strides=[stride, stride], pads=pads), out_size


def _separable(g: _Graph, x: str, prefix: str, c_in: int, c_out: int, stride: int, size: int) -> tuple[str, int]:
    pads, out_size = _same_pads(size, stride)
    depthwise = g.weight(f"{prefix}/depthwise_filter", (3, 3, c_in, 1)).transpose(2, 3, 0, 1)
    pointwise = g.weight(f"{prefix}/pointwise_filter", (1, 1, c_in, c_out)).transpose(3, 2, 0, 1)
    bias = g.weight(f"{prefix}/bias", (c_out,))
    dw = g.node(
        "Conv", [x, g.constant(f"{prefix}/DW", depthwise)], f"{prefix}/depthwise",
        kernel_shape=[3, 3], strides=[stride, stride], pads=pads, group=c_in,
    )
    pw = g.node("Conv", [dw, g.constant(f"{prefix}/PW", pointwise), g.constant(f"{prefix}/B", bias)], prefix)
    return pw, out_size


def _dense_block(g: _Graph, x: str, prefix: str, c_in: int, c_out: int, size: int, first: bool) -> tuple[str, int]:
    """Four convolutions; each after the first takes the ReLU of the sum of the outputs before it."""
    make_first = _conv if first else _separable
    out1, size = make_first(g, x, f"{prefix}/conv0", c_in, c_out, 2, size)
    outs = [g.node("Relu", [out1], f"{prefix}/relu0")]
    for k in (1, 2, 3):
        inner = outs[0] if k == 1 else g.node("Relu", [total], f"{prefix}/relu{k}")
        out, _ = _separable(g, inner, f"{prefix}/conv{k}", c_out, c_out, 1, size)
        outs.append(out)
        total = out
        for j, earlier in enumerate(reversed(outs[:-1])):
            total = g.node("Add", [earlier, total], f"{prefix}/sum{k}_{j}")
    return g.node("Relu", [total], f"{prefix}/out"), size


def expression_net(weights: dict[str, np.ndarray]):
    """The expression net as an onnx ModelProto: input `images` N x 112 x 112 x 3 float32 RGB 0..255 (NHWC, as
    TF.js takes it), output `probabilities` N x 7 in EMOTION_LABELS order."""
    import onnx
    from onnx import TensorProto, helper

    g = _Graph(weights)
    mean = g.constant("mean_rgb", np.array(MEAN_RGB, np.float32))
    x = g.node("Sub", ["images", mean], "centred")
    x = g.node("Div", [x, g.constant("divisor", np.array(255.0, np.float32))], "normalized")
    x = g.node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
    size, c_in = INPUT_SIZE, 3
    for block, c_out in enumerate((32, 64, 128, 256)):
        x, size = _dense_block(g, x, f"dense{block}", c_in, c_out, size, first=block == 0)
        c_in = c_out
    if size != 7:
        raise ConversionError(f"features are {size}x{size} before the pool, expected 7x7")
    x = g.node("AveragePool", [x], "pooled", kernel_shape=[7, 7], strides=[2, 2])
    x = g.node("Flatten", [x], "features")
    fc_w = g.constant("fc/W", g.weight("fc/weights", (256, len(EMOTION_LABELS))))
    fc_b = g.constant("fc/B", g.weight("fc/bias", (len(EMOTION_LABELS),)))
    x = g.node("Gemm", [x, fc_w, fc_b], "logits")
    g.node("Softmax", [x], "probabilities", axis=1)
    unused = sorted(set(weights) - g.used)
    if unused:
        raise ConversionError(f"weights not used by the network: {', '.join(unused)}")
    graph = helper.make_graph(
        g.nodes,
        "face_expression_net",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", INPUT_SIZE, INPUT_SIZE, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(EMOTION_LABELS)])],
        g.initializers,
    )
    model = helper.make_model(graph, producer_name=PRODUCER, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def convert_expression_net(manifest: bytes, data: bytes) -> bytes:
    """The ONNX file's bytes for face-api's expression net weights (manifest JSON and .bin)."""
    return expression_net(read_weights(manifest, data)).SerializeToString()
