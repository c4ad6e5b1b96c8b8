"""The two models as training and export agree on them (and write into the ONNX metadata):
their names, the names the original project gave them, their input layouts. No TensorFlow
here, so command lines and the export metadata read them cheaply."""

from __future__ import annotations

#: The name each model is served under, with the one the original project gave it (the
#: ``classifier`` field of responses).
CLASSIFIER_NAMES = {"softmax": "SoftmaxClassifier", "cnn": "CNNClassifier"}
#: The models ``python -m train`` and ``python -m export`` know.
MODELS = tuple(CLASSIFIER_NAMES)
#: Input layout of each model, as written into the ONNX metadata.
INPUT_LAYOUTS = {"softmax": "NC", "cnn": "NHWC"}
