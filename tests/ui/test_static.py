"""The console's files over real HTTP: served at / and /ui/<name> without a token, with the security headers,
and nothing else of the package reachable through those paths."""
from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from gateway_http import console


def get(cluster, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(cluster.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(method, path)
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def test_the_page_and_its_files_need_no_token(cluster):
    status, headers, body = get(cluster, "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=UTF-8"
    assert b'<script type="module" src="/ui/app.js">' in body
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    for name, kind in (("app.js", "text/javascript"), ("api.js", "text/javascript"), ("style.css", "text/css")):
        status, headers, body = get(cluster, f"/ui/{name}")
        assert status == 200 and headers["content-type"].startswith(kind) and body
    status, headers, body = get(cluster, "/ui/app.js", "HEAD")
    assert status == 200 and body == b""


@pytest.mark.parametrize("path", [
    "/ui/../setup.cfg", "/ui/%2e%2e%2fconsole.py", "/ui/..%2fconsole.py", "/ui/console.py", "/ui/", "/ui",
    "/ui/missing.js", "/ui/sub/app.js", "/gateway_http/ui/app.js", "/v1/ui/app.js", "/ui/.hidden.js",
])
def test_nothing_else_is_reachable(cluster, path):
    status, headers, body = get(cluster, path)
    assert status == 404 and json.loads(body)["code"] == "NOT_FOUND", (path, status, body[:200])


def test_the_api_keeps_its_paths_and_its_token(cluster):
    status, _, body = get(cluster, "/v1/galleries")
    assert status == 401 and json.loads(body)["code"] == "AUTH_FAILED"
    # POST / is the extraction API (the original's findface-extraction-api took its requests there): a token too.
    status, _, body = get(cluster, "/", "POST")
    assert status == 401 and json.loads(body)["code"] == "AUTH_FAILED"


def test_lookup_serves_only_listed_files():
    assert console.lookup([]) == console.lookup(["index.html"])
    assert console.lookup(["ui", "app.js"])[1] == "text/javascript; charset=UTF-8"
    assert console.lookup(["ui", "../app.js"]) is None
    assert console.lookup(["ui", "__init__.py"]) is None
    assert console.lookup(["app.js"]) is None
