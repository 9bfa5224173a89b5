"""Take a student anywhere: ONNX export (fp32, or int8 on request), checked against torch, and an
onnxruntime predictor that serves the export behind the same ``predict`` interface.

``onnx`` and ``onnxruntime`` are an optional extra (``pip install 'lelp-distill[onnx]'``);
nothing here imports them until an export or a session is made.
"""

from lelp.export.check import FP32_TOLERANCE, CheckRows
from lelp.export.onnx_export import build_package, export_onnx, record_export
from lelp.export.runtime import QUANTIZE_CHOICES, OnnxPredictor, onnxruntime_available, read_onnx_manifest, variant_name

__all__ = ["FP32_TOLERANCE", "QUANTIZE_CHOICES", "CheckRows", "OnnxPredictor", "build_package", "export_onnx",
           "onnxruntime_available", "read_onnx_manifest", "record_export", "variant_name"]
