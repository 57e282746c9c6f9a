"""JSON in and out as Toxiproxy's Go server does it: encoding, float32 numbers, decoding and its errors."""

from __future__ import annotations

import pytest

from harness.toxiproxy._gojson import (
    ApiError,
    Field,
    Float32,
    JsonObject,
    decode_body,
    decode_fields,
    dumps,
    to_float32,
)


def test_dumps_is_compact_and_escapes_html() -> None:
    """Output has no spaces and escapes <, > and & as Go's encoder does."""
    assert dumps({"a": [1, True, None], "b": "<&>"}) == '{"a":[1,true,null],"b":"\\u003c\\u0026\\u003e"}'


def test_dumps_keeps_key_order() -> None:
    """Keys come out in the order given (Go follows struct field order, not alphabetical)."""
    assert dumps({"name": 1, "listen": 2, "enabled": 3}) == '{"name":1,"listen":2,"enabled":3}'


@pytest.mark.parametrize(("value", "text"), [
    (1.0, "1"), (0.0, "0"), (0.5, "0.5"), (0.3, "0.3"), (0.123456789, "0.12345679"), (2.0, "2"),
    (1e-7, "1e-7"), (1e22, "1e+22"), (-0.25, "-0.25"),
])
def test_float32_text(value: float, text: str) -> None:
    """A float32 is written in its shortest form, with Go's switch to exponents and 'e-7' clean-up."""
    assert dumps(Float32(value)) == text


def test_float32_rounds() -> None:
    """Float32 holds the float32 value, as Go stores a toxicity."""
    assert Float32(0.1) == to_float32(0.1) != 0.1


def test_decode_empty_body_is_eof() -> None:
    """An empty body is ``bad request body: EOF`` (400), as Go's decoder reports it."""
    with pytest.raises(ApiError) as caught:
        decode_body(b"  \n")
    assert (caught.value.message, caught.value.status) == ("bad request body: EOF", 400)


def test_decode_reads_only_the_first_value() -> None:
    """What follows the first JSON value is ignored, as ``json.Decoder.Decode`` does."""
    assert decode_body(b'{"a": 1} trailing') == JsonObject([("a", 1)])


@pytest.mark.parametrize(("body", "message"), [
    (b"xx", "invalid character 'x' looking for beginning of value"),
    (b'{"name": "j",}', "invalid character '}' looking for beginning of object key string"),
    (b'{"name" 1}', "invalid character '1' after object key"),
    (b'{"a": 1 "b": 2}', "invalid character '\"' after object key:value pair"),
    (b"[1 2]", "invalid character '2' after array element"),
    (b'{"name"', "unexpected EOF"),
])
def test_decode_syntax_errors_in_go_words(body: bytes, message: str) -> None:
    """Malformed bodies are 400 with Go's wording for where the syntax broke."""
    with pytest.raises(ApiError) as caught:
        decode_body(body)
    assert caught.value.message == f"bad request body: {message}"


def test_fields_match_case_insensitively_and_ignore_unknown() -> None:
    """Keys match fields exactly or case-insensitively; unknown keys and nulls are ignored."""
    fields = (Field("name", "string"), Field("enabled", "bool"))
    obj = decode_body(b'{"NAME": "a", "enabled": null, "other": 1}')
    assert decode_fields(obj, fields, "Proxy") == ({"name": "a"}, None)


def test_fields_later_duplicate_wins() -> None:
    """A key given twice takes the later value."""
    obj = decode_body(b'{"rate": 5, "RATE": 7}')
    assert decode_fields(obj, (Field("rate", "int64"),), "BandwidthToxic") == ({"rate": 7}, None)


@pytest.mark.parametrize(("body", "error"), [
    (b'{"latency": "x"}', "json: cannot unmarshal string into Go struct field LatencyToxic.attributes.latency "
                          "of type int64"),
    (b'{"latency": 1.5}', "json: cannot unmarshal number 1.5 into Go struct field LatencyToxic.attributes.latency "
                          "of type int64"),
    (b'{"latency": true}', "json: cannot unmarshal bool into Go struct field LatencyToxic.attributes.latency "
                           "of type int64"),
])
def test_fields_wrong_type_is_gos_error(body: bytes, error: str) -> None:
    """A wrong type gives Go's ``cannot unmarshal`` text naming the struct and field path."""
    _, found = decode_fields(decode_body(body), (Field("latency", "int64"),), "LatencyToxic", "attributes.")
    assert found == error


def test_fields_first_error_wins_and_rest_decodes() -> None:
    """After a wrong type the other fields still decode; the first error is the one reported."""
    fields = (Field("latency", "int64"), Field("jitter", "int64"))
    values, error = decode_fields(decode_body(b'{"latency": "x", "jitter": 4}'), fields, "LatencyToxic")
    assert values == {"jitter": 4}
    assert error is not None
    assert "latency" in error


def test_float32_field_accepts_integers() -> None:
    """A float32 field takes integers and floats, rounded to float32."""
    values, error = decode_fields(decode_body(b'{"toxicity": 1}'), (Field("toxicity", "float32"),), "T")
    assert error is None
    assert values["toxicity"] == 1.0
    assert isinstance(values["toxicity"], Float32)
