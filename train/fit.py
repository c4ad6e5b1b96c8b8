"""Fit one model on MNIST: seeded, validation held out, best epoch kept, summary written."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow

from train import augment, contract, data, models
from train.versions import versions

log = logging.getLogger(__name__)

VALIDATION_SIZE = 5_000
QUICK_TRAIN_SIZE = 3_000
QUICK_VALIDATION_SIZE = 500
QUICK_TEST_SIZE = 1_000
WARMUP_FRACTION = 0.05


@dataclasses.dataclass(frozen=True)
class Options:
    """What ``python -m train`` was asked to do."""

    model: str
    epochs: int
    batch_size: int
    learning_rate: float
    output: Path
    seed: int
    data_dir: Path | None
    quick: bool
    augment: bool
    command: str


#: Defaults per model: epochs, batch size, peak learning rate, augmentation.
DEFAULTS: dict[str, dict[str, Any]] = {
    "softmax": {"epochs": 15, "batch_size": 128, "learning_rate": 0.002, "augment": False},
    "cnn": {"epochs": 24, "batch_size": 128, "learning_rate": 0.003, "augment": True},
}


def split_validation(split: data.Split, size: int, seed: int) -> tuple[data.Split, data.Split]:
    """A seeded random hold-out of ``size`` examples: (train, validation)."""
    order = np.random.default_rng(seed).permutation(len(split))
    held, kept = order[:size], order[size:]
    return (
        data.Split(split.images[kept], split.labels[kept]),
        data.Split(split.images[held], split.labels[held]),
    )


def training_dataset(
    options: Options, train: data.Split, steps_per_epoch: int
) -> tensorflow.data.Dataset:
    """Shuffled, batched, augmented (in the pipeline, not the model) and repeated batches."""
    images = data.to_float(train.images)
    dataset = tensorflow.data.Dataset.from_tensor_slices((images, train.labels.astype(np.int32)))
    dataset = dataset.shuffle(len(train), seed=options.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(options.batch_size).repeat().enumerate()
    seed = options.seed

    def prepare(index: Any, batch: tuple[Any, Any]) -> tuple[Any, Any]:
        batch_images, labels = batch
        if options.augment:
            step_seed = tensorflow.stack([tensorflow.constant(seed, tensorflow.int64), index])
            batch_images, labels = augment.augment(batch_images, labels, step_seed)
        shape = (-1, *models.input_shape(options.model))
        return tensorflow.reshape(batch_images, shape), labels

    dataset = dataset.map(prepare, num_parallel_calls=tensorflow.data.AUTOTUNE)
    return dataset.prefetch(tensorflow.data.AUTOTUNE)


def learning_rate_schedule(options: Options, total_steps: int) -> Any:
    """Linear warm-up to the peak learning rate, then cosine decay to zero."""
    warmup = max(1, int(total_steps * WARMUP_FRACTION))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=options.learning_rate / 10,
        decay_steps=max(1, total_steps - warmup),
        warmup_target=options.learning_rate,
        warmup_steps=warmup,
    )


def train(options: Options) -> dict[str, Any]:
    """Train, keep the epoch with the best validation accuracy, evaluate it on the test set,
    save ``options.output`` (.keras) and its ``.json`` summary; returns the summary."""
    started = time.monotonic()
    keras.utils.set_random_seed(options.seed)
    tensorflow.config.experimental.enable_op_determinism()
    mnist = data.load_mnist(options.data_dir)
    train_split, validation = split_validation(mnist.train, VALIDATION_SIZE, options.seed)
    test = mnist.test
    if options.quick:
        train_split = train_split.head(QUICK_TRAIN_SIZE)
        validation = validation.head(QUICK_VALIDATION_SIZE)
        test = test.head(QUICK_TEST_SIZE)
    steps_per_epoch = math.ceil(len(train_split) / options.batch_size)
    item_shape = models.input_shape(options.model)

    model = models.build(options.model)
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate_schedule(options, steps_per_epoch * options.epochs)
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    options.output.parent.mkdir(parents=True, exist_ok=True)
    history = model.fit(
        training_dataset(options, train_split, steps_per_epoch),
        steps_per_epoch=steps_per_epoch,
        epochs=options.epochs,
        shuffle=False,
        validation_data=(data.to_model_input(validation.images, item_shape), validation.labels),
        callbacks=[
            keras.callbacks.ModelCheckpoint(
                str(options.output), monitor="val_accuracy", mode="max", save_best_only=True
            ),
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", mode="max", patience=max(3, options.epochs // 3)
            ),
        ],
    )
    best = keras.models.load_model(options.output)
    test_loss, test_accuracy = best.evaluate(
        data.to_model_input(test.images, item_shape), test.labels, verbose=0
    )
    validation_accuracies = history.history["val_accuracy"]
    summary = {
        "model": options.model,
        "classifier": contract.CLASSIFIER_NAMES[options.model],
        "test_accuracy": round(float(test_accuracy), 6),
        "test_loss": round(float(test_loss), 6),
        "test_images": len(test),
        "validation_accuracy": round(float(max(validation_accuracies)), 6),
        "validation_images": len(validation),
        "train_images": len(train_split),
        "best_epoch": int(np.argmax(validation_accuracies)) + 1,
        "epochs": len(validation_accuracies),
        "batch_size": options.batch_size,
        "learning_rate": options.learning_rate,
        "augmentation": options.augment,
        "quick": options.quick,
        "seed": options.seed,
        "seconds": round(time.monotonic() - started, 1),
        "parameters": int(best.count_params()),
        "train_data_sha256": mnist.train_sha256,
        "data_source": str(mnist.source),
        "trained_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "training_command": options.command,
        "versions": versions(),
    }
    summary_path = options.output.with_suffix(".json")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
