"""The console's live sightings page in a real browser against the README's cluster: a face posted from a camera
appears under that camera, with its screenshot, its best match and the confidence, without reloading the page."""
from __future__ import annotations

import json
import urllib.request

import pytest

from tests.http.harness import multipart
from tests.ui.test_console import Console

GALLERY = "ui-sightings"


def call(cluster, path: str, fields: dict, photo: bytes | None = None) -> dict:
    if photo is None:
        body, content_type = json.dumps(fields).encode(), "application/json"
    else:
        body, content_type = multipart(fields, {"photo": ("photo.jpg", photo)})
    request = urllib.request.Request(f"{cluster.base_url}/v1{path}", data=body, method="POST", headers={
        "Authorization": f"Token {cluster.admin_token}", "Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.loads(reply.read())


@pytest.fixture(scope="module")
def ui(browser, cluster, faces):
    return Console(browser, cluster, faces)


def test_a_sighting_appears_live_under_its_camera(ui, cluster, faces):
    camera = call(cluster, "/camera", {"meta": "ui-lobby"})["id"]
    # A gallery of its own: the other console tests enroll the same person in the session's cluster.
    call(cluster, f"/galleries/{GALLERY}", {})
    call(cluster, "/face", {"meta": "Ann Lobby", "galleries": json.dumps([GALLERY])},
         (faces / "deepface" / "img1.jpg").read_bytes())
    ui.login(cluster.admin_token)
    ui.one("body.logged-in")
    ui.open("sightings")
    column = f"section.camera[data-camera='{camera}']"
    ui.one(column)
    ui.wait(lambda: ui.text("#live-state") == "live", 30, "the page to go live")
    ui.d.execute_script("window.notReloaded = true;")
    assert not ui.all(f"{column} article.sighting")

    call(cluster, f"/faces/gallery/{GALLERY}/identify", {"cam_id": camera},
         (faces / "deepface" / "img2.jpg").read_bytes())

    card = ui.one(f"{column} article.sighting", timeout=60)
    ui.wait(lambda: card.find_element("css selector", "img").get_attribute("src").startswith("blob:"), 30,
            "the screenshot")
    assert card.find_element("css selector", ".match .meta").text == "Ann Lobby"
    assert 0 < float(card.find_element("css selector", ".match .confidence").text) <= 1
    assert ui.d.execute_script("return window.notReloaded === true;")
    ui.shot("20-live-sighting")
