"""The parity gate: an exported model must answer like the Keras model it came from."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime

TOLERANCE = 1e-4
BATCH_SIZE = 1_000


class ParityError(Exception):
    """The ONNX model disagrees with the Keras model; the message gives the numbers."""


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """How an ONNX model's answers compare with the reference's on the same images."""

    images: int
    argmax_mismatches: int
    max_abs_difference: float
    #: Accuracy of the ONNX model's answers against the true labels.
    accuracy: float
    tolerance: float

    @property
    def passed(self) -> bool:
        """Every argmax equal and every probability within the tolerance."""
        return self.argmax_mismatches == 0 and self.max_abs_difference <= self.tolerance

    def describe(self) -> str:
        """One line with the numbers."""
        return (
            f"{self.images} images: {self.argmax_mismatches} argmax mismatches, "
            f"max |difference| {self.max_abs_difference:.3g} (tolerance {self.tolerance:g}), "
            f"onnxruntime accuracy {self.accuracy:.4f}"
        )


def run_onnx(model: onnx.ModelProto, inputs: np.ndarray) -> np.ndarray:
    """Probabilities of ``model`` on float32 ``inputs`` (in its own layout), run by
    onnxruntime on the CPU in batches."""
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    batches = [
        session.run(None, {input_name: inputs[start : start + BATCH_SIZE]})[0]
        for start in range(0, len(inputs), BATCH_SIZE)
    ]
    return np.concatenate(batches).astype(np.float32)


def compare(
    reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray, tolerance: float = TOLERANCE
) -> ParityReport:
    """Compare two ``[n, 10]`` probability arrays on the same images with true ``labels``."""
    if reference.shape != candidate.shape:
        raise ParityError(f"output shapes differ: {reference.shape} vs {candidate.shape}")
    candidate_labels = candidate.argmax(axis=1)
    return ParityReport(
        images=len(labels),
        argmax_mismatches=int(np.count_nonzero(reference.argmax(axis=1) != candidate_labels)),
        max_abs_difference=float(np.abs(reference - candidate).max(initial=0.0)),
        accuracy=float(np.mean(candidate_labels == labels)) if len(labels) else 0.0,
        tolerance=tolerance,
    )


def gate(
    model: onnx.ModelProto,
    inputs: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray,
    tolerance: float = TOLERANCE,
) -> ParityReport:
    """Run ``model`` on ``inputs`` and compare with the ``reference`` probabilities; raises
    ParityError with the numbers unless every argmax agrees and every difference is within
    ``tolerance``. Returns the report (its accuracy is onnxruntime's)."""
    report = compare(reference, run_onnx(model, inputs), labels, tolerance)
    if not report.passed:
        raise ParityError(f"parity check failed: {report.describe()}")
    return report
