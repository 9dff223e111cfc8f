"""Request parameters of the legacy API: where they come from and what each may hold.

Parameters arrive as a JSON body, an urlencoded or multipart form (multipart is the only way to send the photo
file itself), or the query string, where complex values (boxes, gallery lists) are JSON-encoded. Body values win
over query values of the same name. Every accessor either returns a clean value or raises BAD_PARAM naming the
parameter and echoing what was sent; absent and null values are the same ("use the default"), and so is an empty
string, because form-encoding clients cannot send null (and the Go client sends "" for unset strings).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request

from gateway_http.errors import BODY_TOO_LARGE, MALFORMED_JSON, LegacyError, bad_param, echo_text

GALLERY_NAME = re.compile(r"[a-zA-Z0-9_-]{1,48}")
PRESETS = ("strict", "medium", "low", "none")
SELECTORS = ("biggest", "all", "reject")
TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off", "")
MAX_N = 1000
MAX_LIMIT = 1000
MAX_ID = (1 << 64) - 1
# max_id is a bound on face ids, which the gateway keeps as MongoDB int64 (findface_grpc.gateway.limits).
MAX_PAGE_ID = (1 << 63) - 1
# No parameter nests deeper than a list of boxes; far deeper JSON is only an attack on the parser's recursion.
MAX_JSON_DEPTH = 32
# Coordinates may lie outside the photo, but not absurdly far: this keeps them finite in float32 as well.
MAX_COORD = 1e7


@dataclass(frozen=True)
class Photo:
    """A photo as the client gave it: uploaded bytes or a URL for the gateway to fetch."""

    content: bytes | None = None
    url: str | None = None
    filename: str = ""

    @property
    def shown(self) -> str:
        """How the photo is named back to the client in errors."""
        return self.url if self.url is not None else f"<uploaded file {self.filename or 'photo'}>"


def too_large(limit: int) -> LegacyError:
    return LegacyError(413, BODY_TOO_LARGE, f"request body is larger than {limit / 1e6:g} MB")


@dataclass
class Params:
    values: dict[str, Any] = field(default_factory=dict)
    files: dict[str, FileStorage] = field(default_factory=dict)
    # Names whose values came from a form or the query string as text, where JSON-encoded structures are allowed.
    textual: set[str] = field(default_factory=set)

    # ---- reading a request ----

    @classmethod
    def from_request(cls, request: Request, max_body: int) -> "Params":
        params = cls()
        for name in request.args:
            params._text(name, request.args.getlist(name))
        length = request.content_length
        if length is not None and length > max_body:
            raise too_large(max_body)
        mimetype = request.mimetype
        try:
            if mimetype == "application/x-www-form-urlencoded":
                # `curl -d '{"photo": ...}'` without a Content-Type header sends JSON labelled as a form.
                body = request.get_data(cache=True)
                if body.lstrip().startswith(b"{"):
                    params._json(body)
                    return params
            if mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
                form, files = request.form, request.files
                for name in form:
                    params._text(name, form.getlist(name))
                for name in files:
                    params.files[name] = files[name]
                    params.values.pop(name, None)
            elif mimetype.startswith("image/"):
                # The body is the photo itself, which the API never took: said so, not "not valid JSON".
                raise bad_param("photo", f"<{mimetype} body>", f"the body is {mimetype}: send the photo as a multipart "
                                "file named photo, or its URL as photo in a JSON or form body")
            else:
                body = request.get_data(cache=False)
                if body.strip():
                    params._json(body)
        except RequestEntityTooLarge:
            raise too_large(max_body) from None
        return params

    def _text(self, name: str, values: list[str]) -> None:
        self.values[name] = values if len(values) > 1 else values[0]
        self.textual.add(name)
        self.files.pop(name, None)

    def _json(self, body: bytes) -> None:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise LegacyError(400, MALFORMED_JSON, f"the request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise LegacyError(400, MALFORMED_JSON, f"the request body nests deeper than {MAX_JSON_DEPTH} levels") from None
        if not isinstance(data, dict):
            raise LegacyError(400, MALFORMED_JSON, f"the request body must be a JSON object, not {type(data).__name__}")
        if _depth(data) > MAX_JSON_DEPTH:
            raise LegacyError(400, MALFORMED_JSON, f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
        for name, value in data.items():
            bad = _not_text(name) or _not_text(value)
            if bad:
                raise bad_param(echo_text(name), bad, f"{echo_text(name)}: not valid Unicode text (a lone surrogate)")
            self.values[name] = value
            self.textual.discard(name)
            self.files.pop(name, None)

    # ---- raw access ----

    def has(self, name: str) -> bool:
        return name in self.files or self.get(name) is not None

    def get(self, name: str) -> Any:
        """The value as sent, None when absent, null or an empty string."""
        value = self.values.get(name)
        if value is None or (isinstance(value, str) and value == ""):
            return None
        return value

    def structured(self, name: str) -> Any:
        """The value, JSON-decoded when it came as text and looks like JSON (query strings and forms)."""
        value = self.get(name)
        if name in self.textual and isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
            try:
                data = json.loads(value)
            except ValueError:
                raise bad_param(name, value, f"{name}: not valid JSON") from None
            except RecursionError:
                raise bad_param(name, value, f"{name}: nests deeper than {MAX_JSON_DEPTH} levels") from None
            if _depth(data) > MAX_JSON_DEPTH:
                raise bad_param(name, value, f"{name}: nests deeper than {MAX_JSON_DEPTH} levels")
            if _not_text(data):
                raise bad_param(name, value, f"{name}: not valid Unicode text (a lone surrogate)")
            return data
        return value

    # ---- typed access ----

    def photo(self, name: str, required: bool = True) -> Photo | None:
        upload = self.files.get(name)
        if upload is not None:
            data = upload.read()
            if not data:
                raise bad_param(name, upload.filename or "", f"{name}: the uploaded file is empty")
            return Photo(content=data, filename=upload.filename or "")
        value = self.get(name)
        if value is None:
            if required:
                raise bad_param(name, None, f"{name} is required: upload the file (multipart) or give its URL")
            return None
        if not isinstance(value, str):
            raise bad_param(name, value, f"{name} must be a URL or an uploaded file")
        url = value.strip()
        if not re.match(r"(?i)https?://[^/\s]", url):
            raise bad_param(name, value, f"{name} must be an http(s) URL or an uploaded file")
        return Photo(url=url)

    def string(self, name: str, max_length: int = 4096) -> str | None:
        value = self.values.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise bad_param(name, value, f"{name} must be a string")
        text = str(value)
        if len(text) > max_length:
            raise bad_param(name, text[:100] + "...", f"{name} is longer than {max_length} characters")
        return text

    def flag(self, name: str) -> bool:
        value = self.get(name)
        if value is None or value is False:
            return False
        if value is True:
            return True
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
            return value.strip().lower() in TRUE
        raise bad_param(name, value, f"{name} must be true or false")

    def integer(self, name: str, low: int, high: int) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        number: int | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
            digits = value.strip().lstrip("0") or "0"
            # Python refuses to parse ints of over 4,300 digits; any number this long is out of range anyway.
            number = int(digits) if len(digits) <= 40 else high + 1
        if number is None:
            raise bad_param(name, value, f"{name} must be a whole number")
        if not low <= number <= high:
            raise bad_param(name, value, f"{name} must be within {low}..{high}")
        return number

    def threshold(self, name: str = "threshold") -> str | float | None:
        """A preset name, or a number in [0, 1]; None for the server's default."""
        value = self.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip().lower()
            if text in PRESETS:
                return text
            try:
                number = float(text)
            except ValueError:
                raise bad_param(name, value, f"{name} must be one of {', '.join(PRESETS)} or a number in [0, 1]") from None
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        else:
            raise bad_param(name, value, f"{name} must be one of {', '.join(PRESETS)} or a number in [0, 1]")
        if math.isnan(number) or not 0.0 <= number <= 1.0:
            raise bad_param(name, value, f"{name} must be within [0, 1]")
        return number

    def fraction(self, name: str) -> float | None:
        """A number in [0, 1] (min_quality), given as a number or as text; None when absent."""
        value = self.get(name)
        if value is None:
            return None
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                pass
        if number is None:
            raise bad_param(name, value, f"{name} must be a number in [0, 1]")
        if math.isnan(number) or not 0.0 <= number <= 1.0:
            raise bad_param(name, value, f"{name} must be within [0, 1]")
        return number

    def selector(self, name: str = "mf_selector") -> str | None:
        value = self.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or value.strip().lower() not in SELECTORS:
            raise bad_param(name, value, f"{name} must be one of {', '.join(SELECTORS)}")
        return value.strip().lower()

    def boxes(self, name: str) -> list[tuple[float, float, float, float]]:
        """One box or a list of boxes, each {"x1", "y1", "x2", "y2"} or [x1, y1, x2, y2]; [] when absent."""
        value = self.structured(name)
        if value is None:
            return []
        if isinstance(value, dict) or (isinstance(value, list) and len(value) == 4
                                        and all(_is_number(v) for v in value)):
            return [_box(name, value)]
        if isinstance(value, list):
            return [_box(name, item, value) for item in value]
        raise bad_param(name, value, f"{name} must be {{\"x1\", \"y1\", \"x2\", \"y2\"}}, [x1, y1, x2, y2] or a list of them")

    def coordinate_box(self) -> tuple[float, float, float, float] | None:
        """The box given as separate x1, y1, x2, y2 parameters (identify), None when none of them is given."""
        present = [n for n in ("x1", "y1", "x2", "y2") if self.get(n) is not None]
        if not present:
            return None
        if len(present) != 4:
            missing = sorted({"x1", "y1", "x2", "y2"} - set(present))
            raise bad_param(missing[0], None, f"x1, y1, x2 and y2 must be given together; {', '.join(missing)} missing")
        return _box("bbox", {n: self.get(n) for n in ("x1", "y1", "x2", "y2")})

    def galleries(self, name: str = "galleries") -> list[str]:
        value = self.structured(name)
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, str):
                raise bad_param(name, value, f"{name} must be a list of gallery names")
            check_gallery(name, item)
        return list(items)

    def gallery_change(self, name: str = "galleries") -> tuple[str, list[str]] | None:
        """PUT /face/id: {"add": [...]}, {"del": [...]} or {"set": [...]}; None when absent."""
        value = self.structured(name)
        if value is None:
            return None
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("add", "del", "set"):
            raise bad_param(name, value, f'{name} must be one of {{"add": [...]}}, {{"del": [...]}}, {{"set": [...]}}')
        (action, names), = value.items()
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise bad_param(name, value, f"{name}.{action} must be a list of gallery names")
        for n in names:
            check_gallery(name, n)
        return action, names


def check_gallery(param: str, name: Any) -> str:
    if not isinstance(name, str) or not GALLERY_NAME.fullmatch(name):
        raise bad_param(param, name, f"{param}: gallery names are 1 to 48 of a-z A-Z 0-9 _ -")
    return name


def _depth(value: Any) -> int:
    """How deep JSON containers nest in `value` (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                stack.extend((v, depth + 1) for v in item)
    return deepest


def _not_text(value: Any) -> str | None:
    """The first string in `value` (keys included) that is not valid Unicode text: JSON's \\u escapes can
    spell lone surrogates, which no UTF-8 encoder (protobuf's, or the reply's) accepts."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coordinate(name: str, value: Any, shown: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise bad_param(name, shown, f"{name}: coordinates must be numbers") from None
    if not _is_number(value) or not math.isfinite(value) or abs(value) > MAX_COORD:
        raise bad_param(name, shown, f"{name}: coordinates must be finite numbers")
    return float(value)


def _box(name: str, value: Any, shown: Any = None) -> tuple[float, float, float, float]:
    shown = value if shown is None else shown
    if isinstance(value, dict):
        missing = [k for k in ("x1", "y1", "x2", "y2") if k not in value]
        if missing:
            raise bad_param(name, shown, f"{name}: box lacks {', '.join(missing)}")
        coords = [value[k] for k in ("x1", "y1", "x2", "y2")]
    elif isinstance(value, list) and len(value) == 4:
        coords = value
    else:
        raise bad_param(name, shown, f"{name}: a box is {{\"x1\", \"y1\", \"x2\", \"y2\"}} or [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (_coordinate(name, c, shown) for c in coords)
    if not (x1 < x2 and y1 < y2):
        raise bad_param(name, shown, f"{name}: a box needs x1 < x2 and y1 < y2")
    return x1, y1, x2, y2
