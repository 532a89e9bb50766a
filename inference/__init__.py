"""Inference runners (ONNX Runtime, TensorRT) and the engine file format: the one runtime layer
that the device and export's GPU check both import. No torch."""
