"""Keras model to ONNX with tf2onnx: pinned opset, named tensors, named batch dimension."""

from __future__ import annotations

from typing import Any

import onnx

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
BATCH_DIM = "batch"


def to_onnx(model: Any, opset: int = OPSET) -> onnx.ModelProto:
    """Convert a Keras model whose last layer is named ``probabilities`` into an ONNX model
    with input ``image`` and output ``probabilities``, their first dimension named ``batch``."""
    import tensorflow
    import tf2onnx

    signature = (
        tensorflow.TensorSpec((None, *model.input_shape[1:]), tensorflow.float32, INPUT_NAME),
    )
    function = tensorflow.function(lambda image: {OUTPUT_NAME: model(image, training=False)})
    onnx_model, _ = tf2onnx.convert.from_function(
        function, input_signature=signature, opset=opset, output_path=None
    )
    name_batch_dimension(onnx_model)
    onnx_model.doc_string = ""
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def name_batch_dimension(model: onnx.ModelProto, name: str = BATCH_DIM) -> None:
    """Give the dynamic first dimension of the graph's inputs and outputs one name,
    and rename that dimension wherever else tf2onnx left its generated name."""
    generated: set[str] = set()
    for value in [*model.graph.input, *model.graph.output]:
        first = value.type.tensor_type.shape.dim[0]
        if first.dim_param:
            generated.add(first.dim_param)
        first.dim_param = name
    for value in model.graph.value_info:
        for dimension in value.type.tensor_type.shape.dim:
            if dimension.dim_param in generated:
                dimension.dim_param = name
