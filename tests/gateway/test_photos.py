"""The gateway's photo fetch (ImageSource.url): address checks after resolution, no redirects, size and time caps,
and photos from hosts that end their answers in every way HTTP allows, a real nginx among them."""
from __future__ import annotations

import ipaddress
import os
import shutil
import time

import pytest

from findface_grpc.errors import PHOTO_UNAVAILABLE, InvalidArgument, PhotoUnavailable
from findface_grpc.gateway.photos import PhotoFetcher
from tests.gateway.photo_hosts import DRIPS, FRAMINGS, NGINX, FolderHost, FramedHost, Nginx
from tests.http.harness import PhotoServer

MB = 1_000_000


@pytest.fixture(scope="module")
def server(faces):
    s = PhotoServer(faces)
    yield s
    s.stop()


def fetcher(**kw) -> PhotoFetcher:
    settings = {"max_bytes": 10 * MB, "timeout_s": 2.0, "allowed_networks": ["127.0.0.0/8"], **kw}
    return PhotoFetcher(**settings)


def refused(f: PhotoFetcher, url: str) -> str:
    with pytest.raises(InvalidArgument) as info:
        f.fetch_blocking(url, "image.url")
    assert info.value.message.startswith("image.url: ")
    return info.value.message


def test_fetches_a_photo_from_an_allowed_address(server, faces):
    data = fetcher().fetch_blocking(server.url("deepface/img1.jpg"), "image.url")
    assert data == (faces / "deepface/img1.jpg").read_bytes()
    assert fetcher(allowed_networks=(), allow_private=True).fetch_blocking(server.url("deepface/img1.jpg"), "f")


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "::1", "fe80::1", "fc00::1",
                                     "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::"])
def test_addresses_that_are_not_public_are_refused(address):
    f = PhotoFetcher(10 * MB, 1.0, resolver=lambda host, port: [address])
    message = refused(f, "http://photos.example.com/a.jpg")
    assert "not a public address" in message and "photos.example.com" in message


def test_public_addresses_pass_the_check_and_allow_lists_open_private_ones():
    f = PhotoFetcher(10 * MB, 1.0)
    for address in ("8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8"):
        assert f.allowed(ipaddress.ip_address(address))
    g = PhotoFetcher(10 * MB, 1.0, allowed_networks=["10.0.0.0/8"])
    assert g.allowed(ipaddress.ip_address("10.9.9.9")) and not g.allowed(ipaddress.ip_address("192.168.0.1"))
    # Multicast and unspecified are never a photo server, whatever is allowed.
    h = PhotoFetcher(10 * MB, 1.0, allow_private=True, allowed_networks=["0.0.0.0/0"])
    assert not h.allowed(ipaddress.ip_address("0.0.0.0")) and not h.allowed(ipaddress.ip_address("224.0.0.1"))


def test_every_resolved_address_is_checked_and_the_checked_one_is_used(server):
    port = int(server.base.rsplit(":", 1)[1])
    mixed = fetcher(resolver=lambda host, p: ["127.0.0.1", "10.0.0.1"])
    assert "10.0.0.1" in refused(mixed, f"http://photos.example.com:{port}/deepface/img1.jpg")
    # A name that resolves to an allowed address is fetched from that address, Host header kept.
    pinned = fetcher(resolver=lambda host, p: ["127.0.0.1"])
    assert pinned.fetch_blocking(f"http://photos.example.com:{port}/deepface/img1.jpg", "f")


def test_redirects_are_not_followed(server):
    message = refused(fetcher(), server.url("redirect/deepface/img1.jpg"))
    assert "redirects" in message and "HTTP 302" in message


def test_size_cap_time_cap_and_failures(server):
    assert "over the limit" in refused(fetcher(), server.url("big.jpg"))
    assert "over the limit" in refused(fetcher(max_bytes=1000), server.url("deepface/img1.jpg"))
    started = time.monotonic()
    assert "no answer" in refused(fetcher(timeout_s=0.5), server.url("slow.jpg"))
    assert time.monotonic() - started < 3
    assert "HTTP 404" in refused(fetcher(), server.url("missing.jpg"))
    assert "cannot fetch" in refused(fetcher(), "http://127.0.0.1:9/a.jpg")  # nothing listens on port 9


def test_urls_that_give_no_photo_are_told_from_urls_refused_as_given(server):
    def error(f: PhotoFetcher, url: str) -> InvalidArgument:
        with pytest.raises(InvalidArgument) as info:
            f.fetch_blocking(url, "image.url")
        return info.value

    gave_nothing = [server.url("missing.jpg"), server.url("big.jpg"), server.url("slow.jpg"), "http://127.0.0.1:9/a"]
    for url in gave_nothing:
        e = error(fetcher(timeout_s=0.5), url)
        assert isinstance(e, PhotoUnavailable) and e.details == {PHOTO_UNAVAILABLE: True}, (url, e.message)
    failing = PhotoFetcher(MB, 1.0, resolver=lambda host, port: [])
    assert isinstance(error(failing, "http://nowhere.example.com/a.jpg"), PhotoUnavailable)
    for f, url in ((fetcher(), server.url("redirect/deepface/img1.jpg")), (PhotoFetcher(MB, 1.0), server.url("a.jpg")),
                   (fetcher(), "ftp://example.com/a.jpg")):
        e = error(f, url)
        assert not isinstance(e, PhotoUnavailable) and not e.details, (url, e.message)


@pytest.mark.parametrize("url, why", [
    ("ftp://example.com/a.jpg", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("http://user:secret@example.com/a.jpg", "user name or password"),
    ("http:///a.jpg", "no host"),
    ("http://example.com:99999/a.jpg", "not a valid URL"),
])
def test_urls_refused_before_any_connection(url, why):
    f = PhotoFetcher(MB, 1.0, resolver=lambda host, port: pytest.fail("must not resolve"))
    assert why in refused(f, url)


def test_names_that_do_not_resolve():
    def fail(host, port):
        raise OSError("Name or service not known")

    assert "cannot resolve" in refused(PhotoFetcher(MB, 1.0, resolver=fail), "http://nowhere.invalid/a.jpg")


# A host that hangs up after its answer makes http.client close its side as soon as the body is read; the fetch must
# not touch the socket after that (it once did, and every such photo failed with EBADF).
@pytest.fixture(scope="module")
def framed(faces):
    host = FramedHost({"img1.jpg": (faces / "deepface/img1.jpg").read_bytes(), "empty.jpg": b""})
    yield host
    host.stop()


@pytest.mark.parametrize("drip", DRIPS)
def test_the_time_limit_is_for_the_whole_fetch_not_each_read(framed, drip):
    """A host that answers a byte at a time never lets one read time out; the fetch must still end on time."""
    name = next(iter(framed.photos))
    started = time.monotonic()
    assert "no answer" in refused(fetcher(timeout_s=1.0), f"{framed.base}/{drip}/{name}")
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
def test_photos_arrive_whichever_way_the_host_ends_its_answer(framed, faces, framing):
    photo = (faces / "deepface/img1.jpg").read_bytes()
    started = time.monotonic()
    assert fetcher().fetch_blocking(f"{framed.base}/{framing}/img1.jpg", "f") == photo
    # A host that holds the connection open is not waited on once the body is complete.
    assert time.monotonic() - started < 1.5
    assert "empty body" in refused(fetcher(), f"{framed.base}/{framing}/empty.jpg")
    # With no length given up front, the cap is enforced while reading.
    assert "over the limit" in refused(fetcher(max_bytes=100_000), f"{framed.base}/{framing}/img1.jpg")


def test_photos_from_the_standard_library_folder_server(faces):
    host = FolderHost(faces)
    try:
        data = fetcher().fetch_blocking(f"{host.base}/deepface/img1.jpg", "f")
        assert data == (faces / "deepface/img1.jpg").read_bytes()
        assert "HTTP 404" in refused(fetcher(), f"{host.base}/deepface/missing.jpg")
    finally:
        host.stop()


@pytest.fixture(scope="module")
def nginx(tmp_path_factory, faces):
    if not os.access(NGINX, os.X_OK):
        pytest.skip(f"no nginx at {NGINX}; scripts/setup.sh --tests installs Debian's nginx-light")
    base = tmp_path_factory.mktemp("nginx")
    folder = base / "www"
    folder.mkdir()
    shutil.copy(faces / "deepface/img1.jpg", folder / "img1.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    server = Nginx(base, folder)
    yield server
    server.stop()


def test_photos_from_nginx_serving_a_folder(nginx, faces):
    photo = (faces / "deepface/img1.jpg").read_bytes()
    for _ in range(3):  # each fetch is its own connection, closed after the answer
        assert fetcher().fetch_blocking(f"{nginx.base}/img1.jpg", "image.url") == photo
    assert "HTTP 404" in refused(fetcher(), f"{nginx.base}/missing.jpg")
    assert "HTTP 301" in refused(fetcher(), f"{nginx.base}/moved.jpg")
    assert "empty body" in refused(fetcher(), f"{nginx.base}/empty.jpg")
    assert "over the limit" in refused(fetcher(max_bytes=100_000), f"{nginx.base}/img1.jpg")
    # The fences hold for nginx as for any host: loopback is fetched only because the tests allow it.
    assert "not a public address" in refused(PhotoFetcher(10 * MB, 2.0), f"{nginx.base}/img1.jpg")
