"""Reading request bodies: media type, size limit, JSON that is an object."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from kjerne.fhir.outcome import FhirError, invalid

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
FORM = "application/x-www-form-urlencoded"


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def raw_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise FhirError.of(413, "too-costly", f"the body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise FhirError.of(413, "too-costly", f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, limit: int) -> dict[str, Any]:
    if media_type(request) not in JSON_TYPES:
        raise FhirError.of(
            415, "not-supported", f"send application/fhir+json, not '{media_type(request) or 'no content type'}'"
        )
    data = await raw_body(request, limit)
    if not data.strip():
        raise invalid("the request body is empty")
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FhirError.of(400, "structure", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise FhirError.of(400, "structure", "the body must be a JSON object")
    return parsed


async def form_pairs(request: Request, limit: int) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    if media_type(request) != FORM:
        raise FhirError.of(415, "not-supported", f"POST _search takes {FORM}")
    data = await raw_body(request, limit)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid("the form body is not UTF-8") from exc
    return parse_qsl(text, keep_blank_values=True)
