"""What every API v1 blueprint shares: authentication, problem responses in the OpenAPI
document, weak ETags with ``If-None-Match`` -> 304, cursor pagination with ``Link`` headers."""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any, Callable, Iterable, Sequence

from flask import Response, request, url_for
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from service.auth import require_api_auth
from service.errors import PROBLEM_JSON, ApiError

PREFIX = "/api/v1"
SECURITY = [{"bearerAuth": []}, {"cookieAuth": []}]
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "API token from `mesoscan token create` (tablets)"},
    "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "mesoscan_session",
                   "description": "session cookie from POST /api/v1/session; writes also need the "
                                  "X-CSRF-Token header"},
}


def problem_ref(description: str) -> dict:
    return {"description": description,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


COMMON_RESPONSES = {
    401: problem_ref("not authenticated, or the token is revoked"),
    403: problem_ref("CSRF token missing, or the role may only read"),
    422: problem_ref("invalid input: the problem names the field"),
    500: problem_ref("internal error (no details are given: quote the request_id)"),
}


def api_blueprint(name: str, import_name: str, tag: str, description: str, *, auth: bool = True) -> APIBlueprint:
    bp = APIBlueprint(name, import_name, url_prefix=PREFIX, abp_tags=[Tag(name=tag, description=description)],
                      abp_security=SECURITY if auth else None, abp_responses=COMMON_RESPONSES if auth else None)
    if auth:
        bp.before_request(require_api_auth)
    bp.after_request(conditional_get)
    return bp


def conditional_get(resp: Response) -> Response:
    """Weak ETag (content hash) on successful JSON GETs; ``If-None-Match`` -> 304. Patient data
    is never stored by shared caches."""
    if request.method in ("GET", "HEAD") and resp.status_code == 200 and not resp.is_streamed:
        if resp.mimetype == "application/json" and not resp.headers.get("ETag"):
            resp.set_etag(hashlib.sha256(resp.get_data()).hexdigest()[:32], weak=True)
        if resp.headers.get("ETag"):
            resp.headers.setdefault("Cache-Control", "private, no-cache")
            resp.make_conditional(request)
    elif "Cache-Control" not in resp.headers:
        resp.headers["Cache-Control"] = "no-store"
    return resp


def dump(model: BaseModel | Sequence[BaseModel] | dict) -> Any:
    if isinstance(model, BaseModel):
        return model.model_dump(mode="json", by_alias=True)
    if isinstance(model, dict):
        return model
    return [m.model_dump(mode="json", by_alias=True) for m in model]


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(dump(payload) if isinstance(payload, BaseModel) else payload, separators=(",", ":"),
                      ensure_ascii=False, default=str)
    resp = Response(body, status=status, mimetype="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


# --- cursor pagination ---------------------------------------------------------------------


def encode_cursor(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key), separators=(",", ":"), default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, list) or len(key) != arity:
        raise ApiError(400, "invalid_cursor", "The cursor is not one this API returned.", field="cursor")
    return key


def page_response(items: list[dict], next_key: Sequence[Any] | None) -> Response:
    """``{"items", "next_cursor"}`` with a ``Link: <...>; rel="next"`` header when there is more."""
    next_cursor = encode_cursor(next_key) if next_key is not None else None
    headers = {}
    if next_cursor:
        args = request.args.to_dict()
        args["cursor"] = next_cursor
        link = url_for(request.endpoint, _external=True, **(request.view_args or {}), **args)
        headers["Link"] = f'<{link}>; rel="next"'
    return json_response({"items": items, "next_cursor": next_cursor}, headers=headers)


def paginate(rows: Iterable[Any], key: Callable[[Any], tuple], limit: int, cursor: str | None,
             arity: int) -> tuple[list[Any], tuple | None]:
    """Keyset pagination of rows already in ``key`` order: the rows after the cursor's key,
    at most ``limit``, and the key to continue from (None on the last page)."""
    after = decode_cursor(cursor, arity)
    out = []
    for row in rows:
        k = key(row)
        if after is not None:
            try:
                seen = list(_jsonable(k)) <= after
            except TypeError:
                raise ApiError(400, "invalid_cursor", "The cursor is not one this API returned.",
                               field="cursor") from None
            if seen:
                continue
        out.append(row)
        if len(out) > limit:
            break
    more = len(out) > limit
    out = out[:limit]
    return out, (tuple(_jsonable(key(out[-1]))) if more and out else None)


def _jsonable(key: tuple) -> list:
    return [v.isoformat() if hasattr(v, "isoformat") else v for v in key]
