"""export package: PyTorch checkpoint -> ONNX with the score in the graph (FP32 / FP16 / INT8 QDQ),
parity and fidelity gates, TensorRT engines.

Modules: ``wrapper`` (the exported torch module), ``onnx_export`` (export + metadata), ``graph``
(ONNX helpers, the score subgraph), ``parity``, ``precision`` (INT8), ``fidelity``, ``postprocess``
(candidates -> NMS'd detections), ``pipeline`` (the whole ``msmine export``), ``tensorrt`` (engines,
cache, pycuda runner; no torch), ``cli``.
"""
