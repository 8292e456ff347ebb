"""Strict parsing of form bodies (multipart and urlencoded) already read into memory.

Starlette's form parser falls back to latin-1 for text that is not valid UTF-8, which would
turn a client's bad bytes into a mojibake prompt sent to a vendor. Here text parts must
be UTF-8 and anything else is refused, naming the field.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import attrs
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import Problem, RequestInvalid, invalid

MAX_PARTS = 72


@attrs.define
class Part:
    """One form field: a text value (``filename`` None) or an uploaded file."""

    name: str
    data: bytes = b""
    filename: str | None = None
    content_type: str | None = None
    _headers: dict[bytes, bytes] = attrs.field(factory=dict)


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid(f"{what} is not valid UTF-8.", None, "invalid_multipart") from None


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """Split a multipart body into parts; raises a 400 for anything malformed."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise invalid("The multipart body has no boundary in its Content-Type.", None, "invalid_multipart")
    parts: list[Part] = []
    header_name = bytearray()
    header_value = bytearray()
    current: Part | None = None

    def on_part_begin() -> None:
        nonlocal current
        if len(parts) >= MAX_PARTS:
            raise invalid(f"The multipart body has more than {MAX_PARTS} parts.", None, "invalid_multipart")
        current = Part(name="")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        assert current is not None
        current.data += data[start:end]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        assert current is not None
        current._headers[bytes(header_name).lower()] = bytes(header_value)
        header_name.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        assert current is not None
        disposition = current._headers.get(b"content-disposition")
        if disposition is None:
            raise invalid("A multipart part has no Content-Disposition header.", None, "invalid_multipart")
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise invalid("A multipart part has no field name.", None, "invalid_multipart")
        current.name = _utf8(options[b"name"], "A multipart field name")
        if b"filename" in options:
            current.filename = _utf8(options[b"filename"], "A multipart file name")
            content_type = current._headers.get(b"content-type")
            current.content_type = content_type.decode("latin-1").strip() if content_type else None

    def on_part_end() -> None:
        assert current is not None
        parts.append(current)

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except RequestInvalid:
        raise
    except Exception as exc:  # python-multipart raises several types for broken bodies
        raise invalid(f"The multipart body could not be parsed: {exc}", None, "invalid_multipart") from None
    return parts


def parse_urlencoded(body: bytes) -> list[Part]:
    try:
        pairs = parse_qsl(
            body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=MAX_PARTS
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid(f"The form body could not be parsed: {exc}", None, "invalid_form") from None
    return [Part(name=k, data=v.encode("utf-8")) for k, v in pairs]


def text(part: Part, problems: list[Problem]) -> str | None:
    """The UTF-8 text of a field, or a problem naming it."""
    try:
        return part.data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(Problem(part.name, "is not valid UTF-8 text"))
        return None
