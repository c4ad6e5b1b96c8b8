"""The Keras models: ``softmax`` (one dense layer), ``cnn`` (ours) and the tutorial CNN.

Each model ends in a layer named ``probabilities`` (softmax inside the model), which becomes
the ONNX output's name. Augmentation is not part of any model: it lives in the input pipeline.
"""

from __future__ import annotations

import keras

from train.contract import INPUT_LAYOUTS

IMAGE_SIDE = 28
NUM_CLASSES = 10
FLAT_SIZE = IMAGE_SIDE * IMAGE_SIDE
OUTPUT_NAME = "probabilities"


def input_shape(name: str) -> tuple[int, ...]:
    """The model's input shape without the batch dimension."""
    return (FLAT_SIZE,) if INPUT_LAYOUTS[name] == "NC" else (IMAGE_SIDE, IMAGE_SIDE, 1)


def build_softmax() -> keras.Model:
    """Multinomial logistic regression: one dense layer on the 784 pixels (7,850 parameters)."""
    inputs = keras.Input(shape=(FLAT_SIZE,), name="image")
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name=OUTPUT_NAME)(inputs)
    return keras.Model(inputs, outputs, name="softmax")


def _conv_block(tensor: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    """3x3 convolution (no bias: the batch norm has one), batch norm, ReLU."""
    tensor = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(
        tensor
    )
    tensor = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(tensor)
    return keras.layers.ReLU(name=f"{name}_relu")(tensor)


def build_cnn(dropout: float = 0.3) -> keras.Model:
    """Our CNN: 3x3 conv + batch norm + ReLU blocks (16 filters at 28x28, 2x32 at 14x14,
    2x64 at 7x7), max-pooled after each stage, then dropout and a dense softmax layer on the
    flattened 3x3x64 map. 75,866 parameters and 5.5 M multiply-adds (the tutorial CNN: 3.3 M
    and 13.9 M); the batch norms fold into the convolutions on export."""
    inputs = keras.Input(shape=(IMAGE_SIDE, IMAGE_SIDE, 1), name="image")
    tensor = _conv_block(inputs, 16, "stage1a")
    tensor = keras.layers.MaxPooling2D(name="stage1_pool")(tensor)
    tensor = _conv_block(tensor, 32, "stage2a")
    tensor = _conv_block(tensor, 32, "stage2b")
    tensor = keras.layers.MaxPooling2D(name="stage2_pool")(tensor)
    tensor = _conv_block(tensor, 64, "stage3a")
    tensor = _conv_block(tensor, 64, "stage3b")
    tensor = keras.layers.MaxPooling2D(name="stage3_pool")(tensor)
    tensor = keras.layers.Flatten(name="flatten")(tensor)
    tensor = keras.layers.Dropout(dropout, name="dropout")(tensor)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name=OUTPUT_NAME)(tensor)
    return keras.Model(inputs, outputs, name="cnn")


def build_tutorial_cnn() -> keras.Model:
    """The original TensorFlow tutorial's CNN (conv5x5x32, pool, conv5x5x64, pool,
    dense 1024, dense 10; 3.3 M parameters), kept only as the latency baseline."""
    inputs = keras.Input(shape=(IMAGE_SIDE, IMAGE_SIDE, 1), name="image")
    tensor = keras.layers.Conv2D(32, 5, padding="same", activation="relu")(inputs)
    tensor = keras.layers.MaxPooling2D()(tensor)
    tensor = keras.layers.Conv2D(64, 5, padding="same", activation="relu")(tensor)
    tensor = keras.layers.MaxPooling2D()(tensor)
    tensor = keras.layers.Flatten()(tensor)
    tensor = keras.layers.Dense(1024, activation="relu")(tensor)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name=OUTPUT_NAME)(tensor)
    return keras.Model(inputs, outputs, name="tutorial_cnn")


BUILDERS = {"softmax": build_softmax, "cnn": build_cnn}


def build(name: str) -> keras.Model:
    """Build the model called ``name`` (``softmax`` or ``cnn``), untrained."""
    return BUILDERS[name]()
