"""JSON and number formatting that reproduces Go's ``encoding/json`` output.

BLIS prints ``json.MarshalIndent(v, "", "  ")``: floats in shortest round-trip
form, integral floats without a decimal point, plain decimal notation for
``1e-6 <= |x| < 1e21`` and exponent form otherwise (``1e-7``, ``1e+21``).
Values are emitted in the order given (Python dicts keep insertion order).
"""
from __future__ import annotations

import json
import math
from decimal import Decimal


class GoFloat(float):
    """Marks a value that Go declares as float64 even when it is integral."""


def format_float(x: float) -> str:
    """Go ``encoding/json`` text of a float64."""
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        raise ValueError(f"json: unsupported value {x!r}")
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    a = abs(x)
    if a < 1e-6 or a >= 1e21:
        s = repr(x)
        if "e" not in s:  # repr chose plain notation; force Go's exponent form
            s = "%.17g" % x
            s = repr(float(s))
        mant, exp = s.split("e")
        sign = exp[0] if exp[0] in "+-" else "+"
        digits = exp.lstrip("+-").lstrip("0") or "0"
        if len(digits) < 2:
            digits = "0" + digits
        out = f"{mant}e{sign}{digits}"
        # Go rewrites e-0X as e-X
        if sign == "-" and digits.startswith("0"):
            out = f"{mant}e-{digits[1:]}"
        return out
    if x == int(x):
        return str(int(x))
    return format(Decimal(repr(x)), "f")


def _encode(v, indent: str, level: int) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float):
        return format_float(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    pad = indent * (level + 1)
    end = indent * level
    if isinstance(v, dict):
        if not v:
            return "{}"
        items = [f"{pad}{_encode(str(k), indent, 0)}: {_encode(val, indent, level + 1)}" for k, val in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(v, (list, tuple)):
        if not v:
            return "[]"
        items = [pad + _encode(x, indent, level + 1) for x in v]
        return "[\n" + ",\n".join(items) + "\n" + end + "]"
    if hasattr(v, "item"):  # numpy scalar
        return _encode(v.item(), indent, level)
    raise TypeError(f"json: cannot encode {type(v).__name__}")


def marshal_indent(v, indent: str = "  ") -> str:
    """``json.MarshalIndent(v, "", indent)`` for dicts/lists of str/int/float/bool."""
    return _encode(v, indent, 0)
