"""calibration package: camera-pair registration, upload-threshold calibration, INT8 calibration data.

Modules: ``registration_io`` (read/write/apply the registration YAML; numpy + OpenCV only, the device
imports it), ``register`` (target / points / ECC estimation), ``threshold`` (score threshold for a
target upload rate), ``pairs`` (camera pairs from folders or clips, letterboxed model inputs),
``onnx_scoring`` (score pairs with an exported model in onnxruntime), ``int8_reader`` (the
multi-input calibration data reader), ``cli``.
"""
