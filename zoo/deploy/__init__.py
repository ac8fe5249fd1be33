"""Deployment: the deployed form (``reparameterize``: re-parameterizable blocks fused, BatchNorm folded),
ONNX export and parity check, int8 quantization (onnxruntime), OpenVINO IR and int8 with NNCF
(``zoo.deploy.openvino``, ``pip install 'zoo[openvino]'``), prediction from a checkpoint.

The command line is ``python -m zoo.deploy {export,quantize} [--engine openvino]`` (``zoo/deploy/__main__.py``).
"""

from zoo.deploy.int8 import count_int8_ops, evaluate_int8, quantize_int8
from zoo.deploy.onnx import check_onnx, check_parity, example_input, export_onnx, ort_session
from zoo.deploy.openvino import (check_openvino, compile_openvino, count_openvino_ops, evaluate_openvino,
                                 export_openvino, openvino_runner, quantize_openvino)
from zoo.deploy.predict import predict
from zoo.models.fuse import fold_bn, reparameterize

__all__ = [
    "check_onnx", "check_openvino", "check_parity", "compile_openvino", "count_int8_ops", "count_openvino_ops",
    "evaluate_int8", "evaluate_openvino", "example_input", "export_onnx", "export_openvino", "fold_bn", "openvino_runner",
    "ort_session", "predict", "quantize_int8", "quantize_openvino", "reparameterize",
]
