"""The operator console in a real browser against a real cluster (the README's launcher): log in, galleries,
add photos, search, compare, delete, cluster status, and the errors a person sees.

The tests of this module share one browser and one cluster and run in order: the journey enrolls the faces that
the later pages show. Each step leaves a screenshot in test-artifacts/ui/.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.helpers import face_collage, labelled_photos
from tests.http.harness import multipart
from tests.ui.conftest import ARTIFACTS

GALLERY = "ui-journey"
ENROLLED = {"img1": "person01", "img26": "person02", "img8": "person03"}  # file stem -> identity


class Console:
    def __init__(self, driver, cluster, faces) -> None:
        self.d = driver
        self.cluster = cluster
        self.faces = faces

    # ---- waiting and finding ----

    def wait(self, condition, timeout: float = 60, what: str = "the page"):
        def check(driver):
            try:
                return condition()
            except Exception:  # noqa: BLE001 - a stale or missing element: look again
                return False
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.2).until(check)
        except Exception:
            self.shot("timeout")
            raise AssertionError(f"timed out waiting for {what}; messages: {self.messages()}") from None

    def all(self, css: str):
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def one(self, css: str, timeout: float = 60):
        return self.wait(lambda: self.all(css)[0], timeout, css)

    def text(self, css: str) -> str:
        return self.one(css).text

    def messages(self) -> list[str]:
        return [m.text for m in self.all("#notice .message")]

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.d.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    # ---- actions ----

    def open(self, route: str) -> None:
        self.d.get(f"{self.cluster.base_url}/#/{route}")

    def login(self, token: str) -> None:
        self.d.get(f"{self.cluster.base_url}/")
        self.d.execute_script("sessionStorage.clear(); location.hash = '#/login';")
        field = self.one("#token")
        field.clear()
        field.send_keys(token)
        self.one("#login-button").click()

    def photo(self, stem: str) -> str:
        return str(self.faces / "deepface" / f"{stem}.jpg")

    def api(self, method: str, path: str) -> tuple[int, object]:
        request = urllib.request.Request(f"{self.cluster.base_url}/v1{path}", method=method,
                                         headers={"Authorization": f"Token {self.cluster.admin_token}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                body = reply.read()
                return reply.status, json.loads(body) if body else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def enroll(self, photo: Path, gallery: str, meta: str) -> list[dict]:
        body, content_type = multipart({"galleries": json.dumps([gallery]), "meta": meta},
                                       {"photo": (photo.name, photo.read_bytes())})
        request = urllib.request.Request(f"{self.cluster.base_url}/v1/face", data=body, method="POST", headers={
            "Authorization": f"Token {self.cluster.admin_token}", "Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read())["results"]

    def detect(self, photo: bytes) -> list[dict]:
        body, content_type = multipart({}, {"photo": ("photo.jpg", photo)})
        request = urllib.request.Request(f"{self.cluster.base_url}/v1/detect", data=body, method="POST", headers={
            "Authorization": f"Token {self.cluster.admin_token}", "Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read())["faces"]

    def faces_in(self, gallery: str) -> list[dict]:
        status, body = self.api("GET", f"/faces/gallery/{gallery}?limit=100")
        assert status == 200, body
        return body["results"]

    def confirm(self) -> None:
        self.one("dialog[open] #confirm-ok").click()
        self.wait(lambda: not self.all("dialog[open]"), 10, "the dialog to close")


@pytest.fixture(scope="module")
def ui(browser, cluster, faces):
    return Console(browser, cluster, faces)


def test_wrong_token_is_refused_with_a_readable_message(ui):
    ui.login("not-a-token")
    ui.wait(lambda: "not valid" in ui.text("#login-error"), 30, "the login error")
    assert "#/login" in ui.d.current_url
    assert not ui.all("body.logged-in")
    ui.shot("01-login-refused")


def test_journey_gallery_add_search_compare_delete(ui):
    # Log in.
    ui.login(ui.cluster.admin_token)
    ui.one("#galleries tr[data-gallery='default']")
    assert ui.all("body.logged-in")

    # Create a gallery.
    ui.one("#new-gallery").send_keys(GALLERY)
    ui.one("#create-gallery button").click()
    row = ui.one(f"#galleries tr[data-gallery='{GALLERY}']")
    assert row.find_element(By.CSS_SELECTOR, ".faces").text == "0"
    ui.shot("02-galleries")

    # Add three labelled photos: every face found is boxed on its photo before anything is enrolled.
    ui.open("add")
    Select(ui.one("#add-gallery")).select_by_value(GALLERY)
    ui.one("#add-files").send_keys("\n".join(ui.photo(stem) for stem in ENROLLED))
    ui.wait(lambda: len(ui.all(".upload[data-state='detected'] figure.ready")) == 3, 90, "three photos detected")
    for card in ui.all(".upload"):
        assert card.find_element(By.CSS_SELECTOR, "figure").get_attribute("data-boxes") == "1", card.text
        box = card.find_element(By.CSS_SELECTOR, ".box")
        assert box.size["width"] > 20 and box.size["height"] > 20  # drawn where the face is, not collapsed
        # Each face's quality on its label, as /detect gave it.
        assert re.fullmatch(r"q (0\.\d\d|1\.00)", box.find_element(By.CSS_SELECTOR, ".label .note").text), card.text
        # And its gender, age and emotion: the three are smiling women (tests/data).
        assert re.fullmatch(r"female \d\d happy", box.find_element(By.CSS_SELECTOR, ".label .attrs").text), card.text
    assert ui.faces_in(GALLERY) == []  # detected, not enrolled yet
    assert "Enroll 3 face(s) from 3 photo(s)" == ui.text("#enroll")
    ui.shot("03-add-detected")
    ui.one("#enroll").click()
    ui.wait(lambda: len(ui.all(".upload[data-state='enrolled']")) == 3, 120, "three photos enrolled")
    assert ui.one(".progress.overall").get_attribute("aria-valuenow") == "100"
    assert all(bar.get_attribute("aria-valuenow") == "100" for bar in ui.all(".upload .progress"))
    ui.wait(lambda: len(ui.all(".upload .box.done")) == 3, 10, "the enrolled faces marked")
    ui.shot("04-add-enrolled")
    enrolled = {f["meta"]: f for f in ui.faces_in(GALLERY)}
    assert sorted(enrolled) == sorted(ENROLLED)

    # The gallery's faces, with thumbnails from the photo store.
    ui.open(f"gallery/{GALLERY}")
    ui.wait(lambda: len(ui.all("#faces .face")) == 3, 30, "three face cards")
    ui.wait(lambda: all(ui.d.execute_script("return arguments[0].naturalWidth", img) > 0
                        for img in ui.all("#faces .face img")), 30, "thumbnails loaded")
    assert {c.find_element(By.CSS_SELECTOR, ".meta").text for c in ui.all("#faces .face")} == set(ENROLLED)
    ui.shot("05-gallery-faces")

    # Search with a fourth photo of person01 (img2): person01's face comes first, the query face is boxed.
    for close in ui.all("#notice .message .close"):
        close.click()  # dismissed as a person would, for a clean screenshot
    ui.open("search")
    Select(ui.one("#search-gallery")).select_by_value(GALLERY)
    Select(ui.one("#search-threshold")).select_by_value("none")  # show the others too, ranked below
    ui.one("#search-file").send_keys(ui.photo("img2"))
    ui.one("#search-results .query-face .face")
    ui.wait(lambda: ui.all("#search-results figure.query.ready"), 30, "the query photo")
    cards = ui.all("#search-results .query-face .face")
    assert cards[0].find_element(By.CSS_SELECTOR, ".meta").text == "img1"
    assert int(cards[0].get_attribute("data-id")) == enrolled["img1"]["id"]
    confidences = [float(c.find_element(By.CSS_SELECTOR, ".confidence").text) for c in cards]
    assert confidences == sorted(confidences, reverse=True) and len(cards) == 3
    assert len(ui.all("#search-results figure.query .box")) == 1
    # The query face's gender, age and emotion, on its box and over its matches.
    attrs = ui.one("#search-results figure.query .box .attrs").text
    assert re.fullmatch(r"female \d\d [a-z]+", attrs), attrs
    assert ui.text("#search-results .query-face h3").startswith(f"Face 1 ({attrs}): ")
    assert ui.text("#live-servers") == "Shards answered: 2/2"
    ui.shot("06-search")

    # At the strict preset only the same person is left.
    Select(ui.one("#search-threshold")).select_by_value("strict")
    ui.one("#search-run").click()
    ui.wait(lambda: len(ui.all("#search-results .query-face .face")) == 1
            and ui.all("#search-results .query-face .face .meta")[0].text == "img1", 30, "the strict result")

    # Compare: two photos of person01, then person01 and person02.
    ui.open("compare")
    ui.one("#compare-file-1").send_keys(ui.photo("img1"))
    ui.one("#compare-file-2").send_keys(ui.photo("img4"))
    ui.one("#compare-run").click()
    ui.wait(lambda: ui.text("#verdict").startswith("Same person"), 60, "the verdict")
    assert 0.5 < float(ui.text("#compare-confidence").split()[-1]) <= 1.0
    ui.wait(lambda: len(ui.all(".compare figure.ready .box")) == 2, 30, "both faces boxed")
    ui.shot("07-compare-same")
    ui.one("#compare-file-2").send_keys(ui.photo("img26"))
    ui.one("#compare-run").click()
    ui.wait(lambda: ui.text("#verdict").startswith("Different people"), 60, "the second verdict")
    ui.shot("08-compare-different")

    # Delete a face, after confirming.
    ui.open(f"gallery/{GALLERY}")
    ui.wait(lambda: len(ui.all("#faces .face")) == 3, 30, "three face cards")
    victim = enrolled["img8"]["id"]
    ui.one(f"#faces .face[data-id='{victim}'] .delete-face").click()
    ui.one("dialog[open] button[value='cancel']").click()  # cancelled: nothing happens
    assert ui.api("GET", f"/face/id/{victim}")[0] == 200
    ui.one(f"#faces .face[data-id='{victim}'] .delete-face").click()
    ui.confirm()
    ui.wait(lambda: len(ui.all("#faces .face")) == 2, 30, "two face cards")
    status, body = ui.api("GET", f"/face/id/{victim}")
    assert status == 404 and body["code"] == "NOT_FOUND"
    ui.shot("09-face-deleted")


def test_edit_a_faces_meta_and_galleries(ui):
    ui.open(f"gallery/{GALLERY}")
    face = next(f for f in ui.faces_in(GALLERY) if f["meta"] == "img1")
    ui.one(f"#faces .face[data-id='{face['id']}'] .edit-face").click()
    meta = ui.one("dialog[open] #edit-meta")
    meta.clear()
    meta.send_keys("person01 <b>bold</b>")  # shown as text, never as markup
    galleries = ui.one("dialog[open] #edit-galleries")
    galleries.clear()
    galleries.send_keys(f"{GALLERY}, default")
    ui.one("dialog[open] #edit-save").click()
    card = f"#faces .face[data-id='{face['id']}']"
    ui.wait(lambda: ui.text(f"{card} .meta") == "person01 <b>bold</b>", 30, "the edited meta")
    assert not ui.all(f"{card} .meta b")
    status, body = ui.api("GET", f"/face/id/{face['id']}")
    assert status == 200 and body["meta"] == "person01 <b>bold</b>" and sorted(body["galleries"]) == sorted(
        [GALLERY, "default"])

    # A bad gallery name is refused with the API's reason, in the dialog.
    ui.one(f"{card} .edit-face").click()
    galleries = ui.one("dialog[open] #edit-galleries")
    galleries.clear()
    galleries.send_keys("no such/gallery")
    ui.one("dialog[open] #edit-save").click()
    ui.wait(lambda: "gallery names are 1 to 48" in ui.text("dialog[open] .form-error"), 30, "the refusal")
    ui.shot("10-edit-refused")
    ui.one("dialog[open] button[value='cancel']").click()


def test_faces_are_paged(ui):
    ui.api("POST", "/galleries/ui-paging")
    files = [name for name, _ in labelled_photos(ui.faces)][:26]
    ids = [face["id"] for name in files for face in ui.enroll(ui.faces / name, "ui-paging", Path(name).stem)]
    assert len(ids) == 26
    ui.open("gallery/ui-paging")
    shown = lambda: [int(c.get_attribute("data-id")) for c in ui.all("#faces .face")]  # noqa: E731
    ui.wait(lambda: len(shown()) == 24, 30, "the first page")
    first = shown()
    assert first == sorted(ids, reverse=True)[:24]  # newest first
    assert not ui.one("#newer").is_enabled()
    ui.one("#older").click()
    ui.wait(lambda: len(shown()) == 2, 30, "the second page")
    assert shown() == sorted(ids, reverse=True)[24:] and not ui.one("#older").is_enabled()
    assert ui.text(".pager span") == "page 2"
    ui.one("#newer").click()
    ui.wait(lambda: shown() == first, 30, "the first page again")
    ui.api("DELETE", "/galleries/ui-paging")


def test_a_corrupt_photo_shows_the_reason(ui, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not really a JPEG")
    ui.open("add")
    ui.one("#add-files").send_keys(str(broken))
    ui.wait(lambda: ui.all(".upload[data-state='failed']"), 60, "the failure")
    status = ui.text(".upload[data-state='failed'] .status")
    assert "not a JPEG, PNG, WEBP, GIF, HEIC or AVIF image" in status
    assert "EXTRACTION_ERROR" in status and "HTTP 400" in status
    assert ui.text("#enroll") == "Enroll selected faces" and not ui.one("#enroll").is_enabled()
    ui.shot("11-corrupt-photo")


def test_a_face_too_small_to_enroll_is_marked_and_the_others_enrolled(ui, tmp_path):
    original = (ui.faces / "deepface" / "img1.jpg").read_bytes()
    (face,) = ui.detect(original)
    photo = tmp_path / "small-face.jpg"
    photo.write_bytes(face_collage(original, (face["x1"], face["y1"], face["x2"], face["y2"]), (160, 26)))
    assert ui.api("POST", "/galleries/ui-small")[0] == 201
    ui.open("galleries")  # from another page, so that the add page is drawn anew with the new gallery
    ui.one("#galleries tr[data-gallery='ui-small']")
    ui.open("add")
    Select(ui.one("#add-gallery")).select_by_value("ui-small")
    ui.one("#add-files").send_keys(str(photo))
    ui.wait(lambda: ui.all(".upload[data-state='detected'] figure.ready"), 90, "the photo detected")
    assert ui.one(".upload figure").get_attribute("data-boxes") == "2"  # the small face is shown too
    ui.one("#enroll").click()
    ui.wait(lambda: ui.all(".upload[data-state='enrolled']"), 120, "the photo enrolled")
    (refused,) = ui.all(".upload .box.refused")
    assert re.search(r"\d+x\d+ px", refused.get_attribute("title")), refused.get_attribute("title")
    assert len(ui.all(".upload .box.done")) == 1
    assert "not enrolled: face at" in ui.text(".upload .status")
    assert len(ui.faces_in("ui-small")) == 1
    ui.shot("11b-add-small-face")

    # Searching with it: the small face is boxed as not searched, with the reason.
    ui.open("search")
    Select(ui.one("#search-gallery")).select_by_value("ui-small")
    ui.one("#search-file").send_keys(str(photo))
    ui.wait(lambda: ui.all("#search-results figure.query.ready"), 60, "the query photo")
    assert len(ui.all("#search-results figure.query .box.refused")) == 1
    assert re.search(r"\d+x\d+ px", ui.text("#search-skipped"))
    ui.api("DELETE", "/galleries/ui-small")


def test_cluster_status(ui):
    ui.open("status")
    assert ui.text("#shards-live") == "2/2 live"
    assert ui.text("#model-pack") == "scrfd-mbf"
    counts = [int(row.find_elements(By.CSS_SELECTOR, "td")[3].text) for row in ui.all("#shards tbody tr")]
    _, faces = ui.api("GET", "/faces?limit=100")
    assert sum(counts) == len(faces["results"])
    assert ui.text("#license-faces") == f"{len(faces['results'])} used of unlimited"
    assert ui.text("#license-expiry") == "never"
    assert ui.text("#license-cameras") == "0 used of unlimited"  # no video detector in this cluster
    assert "None" in ui.text("#fast-indexes")
    ui.shot("12-status")

    # A fast index built by the operator's command shows on the page, one row per shard.
    built = subprocess.run(
        [sys.executable, "-m", "findface_grpc.fast_index_cli", "build", "default", "--wait", "--gateway",
         ui.cluster.gateway], env=dict(os.environ, FINDFACE_TOKEN=ui.cluster.admin_token),
        capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    ui.one("main button.secondary").click()  # the page's Refresh
    ui.wait(lambda: len(ui.all("#fast-indexes tbody tr")) == 2, 30, "a fast index row per shard")
    rows = ui.all("#fast-indexes tbody tr")
    assert len(rows) == 2 and all("ready" in row.text and "default" in row.text for row in rows)
    listed = [int(row.find_elements(By.CSS_SELECTOR, "td")[3].text) for row in rows]
    assert sum(listed) == len(faces["results"])
    ui.shot("12b-status-fast-index")
    dropped = subprocess.run(
        [sys.executable, "-m", "findface_grpc.fast_index_cli", "drop", "default", "--gateway", ui.cluster.gateway],
        env=dict(os.environ, FINDFACE_TOKEN=ui.cluster.admin_token), capture_output=True, text=True, timeout=60)
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr


def test_gallery_deleted_after_confirmation(ui):
    ui.open("galleries")
    ui.one("#new-gallery").send_keys("ui-trash")
    ui.one("#create-gallery button").click()
    ui.one("#galleries tr[data-gallery='ui-trash'] .delete-gallery").click()
    ui.confirm()
    ui.wait(lambda: not ui.all("#galleries tr[data-gallery='ui-trash']"), 30, "the row to go")
    assert ui.api("GET", "/faces/gallery/ui-trash")[0] == 404
    assert any("ui-trash deleted" in m for m in ui.messages())


def test_a_revoked_token_sends_the_user_back_to_login(ui):
    temporary = ui.cluster.token_cli("create", "ui-temporary")
    ui.login(temporary)
    ui.one("#galleries")
    ui.cluster.token_cli("revoke", "ui-temporary")
    # The gateway caches a token's check for a few seconds; the next call after that is refused.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ui.d.get(f"{ui.cluster.base_url}/")  # a fresh page load: each one asks the API again
        ui.wait(lambda: ui.all("#galleries") or "#/login" in ui.d.current_url, 30, "the galleries or the login")
        if "#/login" in ui.d.current_url:
            break
        time.sleep(1)
    ui.wait(lambda: "refused" in ui.text("#login-error"), 10, "the login page's reason")
    assert not ui.all("body.logged-in")
    assert ui.d.execute_script("return sessionStorage.getItem('findface.token')") is None
    ui.shot("13-token-revoked")


def test_no_script_errors_in_the_console(ui):
    errors = [e["message"] for e in ui.d.get_log("browser") if e["level"] == "SEVERE"
              and "Failed to load resource" not in e["message"]]  # the refused calls above, on purpose
    assert errors == []
