"""calibration package: camera-pair registration, upload-threshold calibration, INT8 calibration data.

Modules: ``registration_io`` (the registration YAML; re-exports :mod:`msmine.calibration_files`, which
the device imports), ``register`` (target / points / ECC estimation), ``threshold`` (score threshold for a
target upload rate), ``pairs`` (camera pairs from the device's source specs, folders or clips, made model input by
:func:`msmine.feeds.feeds`),
``onnx_scoring`` (score pairs with an exported model in onnxruntime), ``int8_reader`` (the
multi-input calibration data reader), ``cli``.
"""
