"""The grader's wire format: plain data between the grader and its worker, and nothing else.

The grader sends each exercise's cases to the worker, and the worker sends back what the
student's code returned. Both directions go through :func:`encode` / :func:`decode`,
which know a closed set of types: ``None``, ``bool``, ``int``, ``float``, ``complex``,
``str``, ``bytes``, lists, tuples, dicts with string keys, numpy arrays of numbers or
booleans, and numpy scalars. There is no pickle anywhere: unpickling is running code, and
the grader must never run anything that came out of the student's process. Decoding a
message builds only those types, so a forged or malformed message can at worst be wrong
data, which the judge then scores as a wrong answer.

Keys of a case that start with ``_`` are the grader's alone (an expected answer, a seed
for a hidden reference): :func:`public` drops them before a case leaves the grader.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np

MAX_DEPTH = 32
_TAG = "__mlc__"


class WireError(ValueError):
    """A value that cannot travel (an object of an unknown type) or a malformed message."""


def public(case: dict) -> dict:
    """The part of a case the worker may see: every key that does not start with ``_``."""
    return {k: v for k, v in case.items() if not (isinstance(k, str) and k.startswith("_"))}


def to_plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready data (tagged dicts for arrays, tuples, bytes, odd floats)."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply to send")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else {_TAG: "float", "v": repr(v)}
    if isinstance(value, (complex, np.complexfloating)):
        return {_TAG: "complex", "re": to_plain(value.real), "im": to_plain(value.imag)}
    if isinstance(value, (bytes, bytearray)):
        return {_TAG: "bytes", "b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise WireError(f"cannot send an array of dtype {value.dtype}")
        data = np.array(value, order="C", copy=True)  # keeps 0-d arrays 0-d
        return {_TAG: "ndarray", "dtype": data.dtype.str, "shape": list(data.shape),
                "b64": base64.b64encode(data.tobytes()).decode("ascii")}
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [to_plain(v, depth + 1) for v in value]}
    if isinstance(value, list):
        return [to_plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or k == _TAG:
                raise WireError(f"cannot send a dict with key {k!r}: keys must be strings")
            out[k] = to_plain(v, depth + 1)
        return out
    raise WireError(f"cannot send a value of type {type(value).__name__}; an observation "
                    "must be plain data (numbers, strings, lists, dicts, numpy arrays)")


def from_plain(data: Any, depth: int = 0) -> Any:
    """The inverse of :func:`to_plain`; raises WireError on anything it did not make."""
    if depth > MAX_DEPTH:
        raise WireError("message nested too deeply")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [from_plain(v, depth + 1) for v in data]
    if not isinstance(data, dict):
        raise WireError(f"unexpected {type(data).__name__} in a message")
    tag = data.get(_TAG)
    if tag is None:
        return {k: from_plain(v, depth + 1) for k, v in data.items()}
    try:
        if tag == "float":
            if data["v"] not in ("nan", "inf", "-inf"):
                raise WireError(f"bad float {data['v']!r}")
            return float(data["v"])
        if tag == "complex":
            return complex(from_plain(data["re"], depth + 1), from_plain(data["im"], depth + 1))
        if tag == "bytes":
            return base64.b64decode(data["b64"], validate=True)
        if tag == "tuple":
            return tuple(from_plain(v, depth + 1) for v in data["items"])
        if tag == "ndarray":
            dtype = np.dtype(data["dtype"])
            if dtype.kind not in "biufc":
                raise WireError(f"bad array dtype {dtype}")
            shape = tuple(int(n) for n in data["shape"])
            raw = base64.b64decode(data["b64"], validate=True)
            if len(raw) != math.prod(shape) * dtype.itemsize:
                raise WireError("array data does not match its shape")
            return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    except WireError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise WireError(f"malformed {tag} in a message: {err}") from None
    raise WireError(f"unknown tag {tag!r} in a message")


def encode(value: Any) -> str:
    """One line of JSON for ``value``."""
    return json.dumps(to_plain(value), separators=(",", ":"), allow_nan=False)


def decode(line: str | bytes) -> Any:
    """The value of one line made by :func:`encode`; WireError when it is not one."""
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise WireError(f"not a message: {err}") from None
    return from_plain(data)


def roundtrip(value: Any) -> Any:
    """What the other side of the wire receives for ``value`` (a deep, plain copy)."""
    return decode(encode(value))
