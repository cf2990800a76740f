"""Using a trained model outside the pipeline: scoring audio files (detect) and exporting the
network (ONNX, TorchScript) with the sidecar detect reads."""
