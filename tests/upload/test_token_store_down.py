"""findface-upload with its token store (MongoDB) unreachable: tokens get 503 (retry), not 401 (wrong
credentials); users from config and public reads go on working."""
from __future__ import annotations

import pytest

from findface_grpc import launch
from tests.gateway.harness import HOST, START_TIMEOUT, address
from tests.upload.harness import DavClient


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    base = tmp_path_factory.mktemp("token-store-down")
    listen = address(launch.free_port())
    nobody = f"mongodb://127.0.0.1:{launch.free_port()}/?directConnection=true"  # nothing listens there
    proc = launch.python_server(
        "upload-no-mongo", "gateway_http.upload",
        ["--listen", listen, "--root", str(base / "store"), "--gateway", address(launch.free_port()),
         "--mongo-uri", nobody],
        base / "upload.log", env={"FINDFACE_UPLOAD_USERS": "operator:op-secret"},
    ).start()
    try:
        launch.wait_tcp(HOST, int(listen.rpartition(":")[2]), START_TIMEOUT, proc)
        yield listen, proc
    finally:
        proc.stop()


def test_a_token_that_cannot_be_checked_gets_503(store):
    listen, proc = store
    reply = DavClient(listen, "any", "some-api-token").request("PROPFIND", "/dropbox/", headers={"Depth": "1"})
    assert reply.status == 503, reply
    assert b"cannot check the API token now" in reply.raw and b"token store (MongoDB) unavailable" in reply.raw
    assert "www-authenticate" not in reply.headers  # not a credentials problem: clients keep theirs and retry


def test_config_users_and_public_reads_still_work(store):
    listen, _ = store
    assert DavClient(listen, "operator", "op-secret").request("PROPFIND", "/dropbox/",
                                                              headers={"Depth": "1"}).status == 207
    assert DavClient(listen).request("PROPFIND", "/dropbox/", headers={"Depth": "1"}).status == 401
    photo = "/photos/ab/" + "ab" * 32 + ".jpg"
    assert DavClient(listen).get(photo).status == 404  # public: no credentials asked, the file is just absent
    assert DavClient(listen, "any", "some-api-token").get(photo).status == 404  # a token is not needed here
