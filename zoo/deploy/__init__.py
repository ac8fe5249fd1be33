"""Deployment: the deployed form (``reparameterize``: re-parameterizable blocks fused, BatchNorm folded),
ONNX export and parity check, int8 quantization (onnxruntime), prediction from a checkpoint.

The command line is ``python -m zoo.deploy {export,quantize}`` (``zoo/deploy/__main__.py``).
"""

from zoo.deploy.int8 import count_int8_ops, evaluate_int8, quantize_int8
from zoo.deploy.onnx import check_onnx, example_input, export_onnx, ort_session
from zoo.deploy.predict import predict
from zoo.models.fuse import fold_bn, reparameterize

__all__ = [
    "check_onnx", "count_int8_ops", "evaluate_int8", "example_input", "export_onnx", "fold_bn", "ort_session",
    "predict", "quantize_int8", "reparameterize",
]
