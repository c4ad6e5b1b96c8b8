"""The model runtime: onnxruntime sessions and the model contract read from their metadata;
knows nothing of HTTP."""
