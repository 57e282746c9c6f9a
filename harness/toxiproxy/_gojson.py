"""JSON in and out the way Toxiproxy's Go server does it, so clients cannot tell the two servers apart.

What a client sees of ``encoding/json`` is reproduced here: compact output with ``<``, ``>``, ``&``
escaped; float32 numbers in their shortest form (``1``, ``0.3``); decoding that reads only the first
JSON value of a body, matches field names case-insensitively, ignores unknown fields and ``null``, and
reports the first wrong type as ``json: cannot unmarshal string into Go struct field X.y of type int64``.
Syntax errors keep Go's prefix and its wording for the common cases (empty body: ``EOF``); the rest of
their text may differ. Errors are :class:`ApiError`, which the API turns into ``{"error", "status"}``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

__all__ = [
    "BAD_REQUEST_BODY",
    "INVALID_STREAM",
    "INVALID_TOXIC_TYPE",
    "MISSING_FIELD",
    "PROXY_ALREADY_EXISTS",
    "PROXY_NOT_FOUND",
    "TOXIC_ALREADY_EXISTS",
    "TOXIC_NOT_FOUND",
    "ApiError",
    "Field",
    "Float32",
    "JsonObject",
    "decode_body",
    "decode_fields",
    "dumps",
    "kind_of",
    "to_float32",
]


class ApiError(Exception):
    """An API failure with the HTTP status it is answered with (Go's ``ApiError``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def joined(self, detail: str) -> ApiError:
        """``wrapper: detail``, as Go's ``joinError`` builds ``bad request body: EOF``."""
        return ApiError(f"{self.message}: {detail}", self.status)

    def body(self) -> dict[str, object]:
        return {"error": self.message, "status": self.status}


BAD_REQUEST_BODY: Final = ApiError("bad request body", 400)
MISSING_FIELD: Final = ApiError("missing required field", 400)
PROXY_NOT_FOUND: Final = ApiError("proxy not found", 404)
PROXY_ALREADY_EXISTS: Final = ApiError("proxy already exists", 409)
INVALID_STREAM: Final = ApiError("stream was invalid, can be either upstream or downstream", 400)
INVALID_TOXIC_TYPE: Final = ApiError("invalid toxic type", 400)
TOXIC_ALREADY_EXISTS: Final = ApiError("toxic already exists", 409)
TOXIC_NOT_FOUND: Final = ApiError("toxic not found", 404)


class JsonObject(list[tuple[str, Any]]):
    """A decoded JSON object as its key/value pairs in document order (Go walks them in order)."""


class Float32(float):
    """A float that Go holds as float32: rounded to float32 and written in its shortest form."""

    def __new__(cls, value: float) -> Float32:
        return super().__new__(cls, to_float32(value))


FLOAT32_MAX: Final = 3.4028234663852886e38


def to_float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as Go stores a ``float32`` field."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _float32_text(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f' or 'e', -1, 32)`` as encoding/json chooses between them."""
    if value == 0:
        return "0"
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if to_float32(float(text)) == value:
            break
    if 1e-6 <= abs(value) < 1e21:
        fixed = format(Decimal(text), "f")
        return fixed.rstrip("0").rstrip(".") if "." in fixed else fixed
    mantissa, _, exponent = format(Decimal(text), "e").partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"


def _string(value: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def _encode(value: object, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, Float32):
        out.append(_float32_text(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(repr(value) if not value.is_integer() else str(int(value)))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Mapping):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(_string(str(key)))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, Iterable):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: object) -> str:
    """``value`` as Go's ``json.Marshal`` writes it (key order as given: Go follows struct order)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out)


def _quote_char(char: str) -> str:
    """A character as Go's ``%q`` of a rune shows it: ``'x'``, ``'\\n'``, ``'\\''``."""
    special = {"'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}
    if char in special:
        return f"'{special[char]}'"
    return f"'{char}'" if char.isprintable() else f"'\\x{ord(char):02x}'"


def _container(text: str, pos: int) -> str:
    """``object`` or ``array``: what the innermost open bracket before ``pos`` is (strings skipped)."""
    stack: list[str] = []
    in_string = escaped = False
    for char in text[:pos]:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]" and stack:
            stack.pop()
    return "object" if stack and stack[-1] == "{" else "array"


def _syntax_error(text: str, exc: json.JSONDecodeError) -> str:
    """Go's wording of a JSON syntax error, from where Python's decoder stopped and why."""
    if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated"):
        return "unexpected EOF"
    char = _quote_char(text[exc.pos])
    if exc.msg.startswith("Invalid control character"):
        return f"invalid character {char} in string literal"
    if exc.msg.startswith("Expecting property name"):
        return f"invalid character {char} looking for beginning of object key string"
    if exc.msg.startswith("Expecting ':'"):
        return f"invalid character {char} after object key"
    if exc.msg.startswith("Expecting ','"):
        where = "object key:value pair" if _container(text, exc.pos) == "object" else "array element"
        return f"invalid character {char} after {where}"
    return f"invalid character {char} looking for beginning of value"


def decode_body(body: bytes) -> object:
    """The first JSON value of ``body`` (Go's ``json.NewDecoder(r).Decode`` ignores what follows it).

    Raises ``bad request body: ...`` (400) for an empty or malformed body.
    """
    text = body.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise BAD_REQUEST_BODY.joined("EOF")
    try:
        value, _ = json.JSONDecoder(object_pairs_hook=JsonObject).raw_decode(text)
    except json.JSONDecodeError as exc:
        raise BAD_REQUEST_BODY.joined(_syntax_error(text, exc)) from None
    return value


def kind_of(value: object) -> str:
    """How Go names a JSON value's kind in an unmarshal error."""
    if isinstance(value, JsonObject):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


@dataclass(frozen=True)
class Field:
    """One field of a Go struct as JSON sees it: its key and its Go type."""

    key: str
    gotype: str  # "string", "bool", "int64", "int" or "float32"


def _convert(value: object, gotype: str) -> tuple[object, str | None]:
    """``value`` as ``gotype``, or the kind to blame in Go's error message."""
    if gotype == "string":
        return (value, None) if isinstance(value, str) else (None, kind_of(value))
    if gotype == "bool":
        return (value, None) if isinstance(value, bool) else (None, kind_of(value))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, kind_of(value)
    if gotype == "float32":
        if isinstance(value, float) and (math.isinf(value) or abs(value) > FLOAT32_MAX):
            return None, f"number {value!r}"
        return Float32(float(value)), None
    if isinstance(value, float) or not -(2**63) <= value < 2**63:
        return None, f"number {value!r}"
    return value, None


def decode_fields(obj: object, fields: Iterable[Field], struct: str,
                  path: str = "") -> tuple[dict[str, object], str | None]:
    """The known fields of the JSON object ``obj``, and Go's first type error (or ``None``).

    Like Go: keys match fields exactly, else case-insensitively; unknown keys and ``null`` values are
    ignored; a later duplicate key wins; after a wrong type the rest is still decoded, and the first
    error is the one reported. ``struct`` and ``path`` name the place in the error message
    (``Go struct field LatencyToxic.attributes.latency``).
    """
    by_key = {f.key: f for f in fields}
    folded = {f.key.lower(): f for f in by_key.values()}
    values: dict[str, object] = {}
    first: str | None = None
    assert isinstance(obj, JsonObject)
    for key, raw in obj:
        field = by_key.get(key) or folded.get(key.lower())
        if field is None or raw is None:
            continue
        value, bad = _convert(raw, field.gotype)
        if bad is None:
            values[field.key] = value
        elif first is None:
            first = (f"json: cannot unmarshal {bad} into Go struct field {struct}.{path}{field.key} "
                     f"of type {field.gotype}")
    return values, first
