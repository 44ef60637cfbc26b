"""Reading an ONNX file as untrusted input.

A model file comes from elsewhere, so nothing in it is believed before it is checked:

* **external data** (big tensors kept in side files next to the model) may only live
  inside the model's own folder: a ``location`` such as ``../../etc/passwd`` or an
  absolute path is refused, the path-traversal class of loader bugs (CVE-2024-27318 in
  the onnx package itself);
* **declared sizes** are checked against the bytes actually present *before* anything
  is allocated: a tensor claiming ``dims = [10**12]`` with eight bytes of data is an
  error naming the tensor, not a memory blow-up;
* a **truncated or corrupt** file is a :class:`OnnxImportError` naming the file (the
  protobuf cannot be parsed) or the tensor whose data is short.

:func:`load_model` returns the parsed ``ModelProto`` with external data read in, and
:func:`tensor_to_numpy` is the one place a ``TensorProto`` becomes a numpy array.
"""

from __future__ import annotations

import os

import numpy as np

from ...ndarray.shapes import DTYPES

# Tensors larger than this are refused outright: the course's models are far smaller,
# and a hostile header should not make us try to allocate terabytes.
MAX_TENSOR_BYTES = 1 << 31


class OnnxImportError(ValueError):
    """An ONNX model that cannot be imported: the message names the file, tensor or node."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX support needs the onnx package: pip install -e \".[onnx]\"") \
            from None
    return onnx


# ONNX element type -> numpy dtype name. ONNX's bool is carried as uint8 (0 or 1): mlc's
# NDArray has no bool dtype, and a 0/1 byte is what a bool tensor stores anyway.
def dtype_of(elem_type: int, where: str) -> str:
    onnx = _onnx()
    T = onnx.TensorProto
    table = {T.FLOAT: "float32", T.DOUBLE: "float64", T.FLOAT16: "float16",
             T.INT8: "int8", T.UINT8: "uint8", T.INT16: "int16", T.UINT16: "uint16",
             T.INT32: "int32", T.UINT32: "uint32", T.INT64: "int64", T.UINT64: "uint64",
             T.BOOL: "uint8", T.BFLOAT16: "bfloat16", T.FLOAT8E4M3FN: "float8_e4m3fn",
             T.FLOAT8E4M3FNUZ: "float8_e4m3fnuz", T.FLOAT8E5M2: "float8_e5m2",
             T.FLOAT8E5M2FNUZ: "float8_e5m2fnuz", T.FLOAT8E8M0: "float8_e8m0fnu",
             T.FLOAT4E2M1: "float4_e2m1fn", T.INT4: "int4", T.UINT4: "uint4", T.INT2: "int2",
             T.UINT2: "uint2"}
    table = {k: v for k, v in table.items() if v in DTYPES}   # bfloat16 needs ml_dtypes
    if elem_type not in table:
        name = T.DataType.Name(elem_type) if elem_type in T.DataType.values() else elem_type
        raise OnnxImportError(f"{where}: element type {name} is not supported "
                              f"(supported: {', '.join(DTYPES)}, bool)")
    return table[elem_type]


def _declared_bytes(t, where: str) -> tuple[tuple[int, ...], np.dtype, int]:
    dims = tuple(int(d) for d in t.dims)
    if any(d < 0 for d in dims):
        raise OnnxImportError(f"tensor {t.name!r} ({where}): negative dimension in {dims}")
    dtype = np.dtype(dtype_of(t.data_type, f"tensor {t.name!r} ({where})"))
    count = int(np.prod(dims, dtype=object)) if dims else 1
    nbytes = count * dtype.itemsize
    if nbytes > MAX_TENSOR_BYTES:
        raise OnnxImportError(f"tensor {t.name!r} ({where}) declares shape {dims}: "
                              f"{nbytes} bytes, more than the {MAX_TENSOR_BYTES} allowed")
    return dims, dtype, count


def _external_bytes(t, base_dir: str, where: str) -> bytes:
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location")
    if not loc:
        raise OnnxImportError(f"tensor {t.name!r} ({where}): external data without a location")
    if os.path.isabs(loc) or base_dir is None:
        raise OnnxImportError(f"tensor {t.name!r} ({where}): external data location {loc!r} "
                              f"is refused: only files inside the model's folder are read")
    base = os.path.realpath(base_dir)
    path = os.path.realpath(os.path.join(base, loc))
    if os.path.commonpath([base, path]) != base:
        raise OnnxImportError(f"tensor {t.name!r} ({where}): external data location {loc!r} "
                              f"points outside the model's folder {base}: refused")
    if not os.path.isfile(path):
        raise OnnxImportError(f"tensor {t.name!r} ({where}): external data file {loc!r} "
                              f"does not exist")
    offset = int(info.get("offset", 0))
    size = os.path.getsize(path)
    length = int(info["length"]) if "length" in info else size - offset
    if offset < 0 or length < 0 or offset + length > size:
        raise OnnxImportError(f"tensor {t.name!r} ({where}): external data wants bytes "
                              f"[{offset}, {offset + length}) of {loc!r}, which has {size}: "
                              f"truncated or corrupt")
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def tensor_to_numpy(t, where: str = "initializer", base_dir: str | None = None) -> np.ndarray:
    """A ``TensorProto`` as a numpy array, its declared size checked against its data."""
    onnx = _onnx()
    dims, dtype, count = _declared_bytes(t, where)
    if t.data_location == onnx.TensorProto.EXTERNAL:
        raw = _external_bytes(t, base_dir, where)
    elif t.HasField("raw_data"):
        raw = t.raw_data
    else:
        raw = None
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise OnnxImportError(f"tensor {t.name!r} ({where}) declares shape {dims} "
                                  f"({count * dtype.itemsize} bytes of {dtype}) but holds "
                                  f"{len(raw)} bytes: truncated or corrupt")
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(dims)
    field = onnx.helper.tensor_dtype_to_field(t.data_type)
    held = len(getattr(t, field))
    if held != count:
        raise OnnxImportError(f"tensor {t.name!r} ({where}) declares shape {dims} ({count} "
                              f"values) but holds {held}: truncated or corrupt")
    return onnx.numpy_helper.to_array(t).astype(dtype).reshape(dims)


def load_model(model_or_path):
    """``(model, base_dir)``: a ``ModelProto`` (given, or parsed from a path or bytes) and
    the folder its external data may come from (``None`` when it was not a file)."""
    onnx = _onnx()
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path, None
    if isinstance(model_or_path, (bytes, bytearray)):
        data, base, what = bytes(model_or_path), None, "the given bytes"
    else:
        path = os.fspath(model_or_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no ONNX model file at {path!r}")
        with open(path, "rb") as f:
            data = f.read()
        base, what = os.path.dirname(os.path.abspath(path)), repr(path)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError and friends
        raise OnnxImportError(f"cannot parse {what} as an ONNX model ({len(data)} bytes): "
                              f"truncated or corrupt ({e})") from None
    if not model.graph.node and not model.graph.output:
        raise OnnxImportError(f"{what} parses to an empty model: not an ONNX file, or "
                              f"truncated")
    return model, base
