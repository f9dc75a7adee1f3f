"""The engine every per-image job runs on: the store, cached per-image jobs, embedding, ONNX Runtime, progress."""
