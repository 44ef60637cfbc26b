"""Frontends: models made elsewhere, imported as mlc graphs.

``graph.from_onnx(model_or_path)`` (:mod:`.onnx`) reads an ONNX model; the ``onnx``
package is imported only when it is called (``pip install -e ".[onnx]"``).
"""

from .onnx import UnsupportedOpError, from_onnx
from .onnx_load import OnnxImportError

__all__ = ["OnnxImportError", "UnsupportedOpError", "from_onnx"]
