"""Export side: ``.keras`` to ``onnx_models/<name>.onnx``, parity-checked, metadata embedded."""
