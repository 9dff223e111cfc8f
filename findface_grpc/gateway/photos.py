"""Photos given by URL (ImageSource.url): fetched by the gateway, carefully.

A URL comes from a client and makes the gateway open a connection, so the fetch is fenced in:
- http and https only, no user:password in the URL;
- the host name is resolved once, every address it resolves to is checked, and the connection goes to a checked
  address (a second lookup could answer differently: DNS rebinding). Addresses that are not public (loopback,
  private, link-local, shared, multicast, reserved, unspecified) are refused unless `allow_private` is set or
  they fall in one of `allowed_networks`, or the URL is on one of `own_origins` (the cluster's own photo store,
  whose URLs the face objects carry: a client may send one back, e.g. to enroll a face's photo in another gallery);
- no redirects: a 3xx answer is refused, as in the original product ("public and direct");
- at most `max_bytes` are read, and the whole fetch must finish within `timeout_s`.
Every refusal is an InvalidArgument naming the field, so the caller learns what to fix: a URL refused as given is a
plain one, a URL that was fetched but gave no photo (unreachable, an error answer, too slow, empty, too large) is a
PhotoUnavailable.

The work is blocking socket I/O (http.client), run in a worker thread so that the event loop keeps serving.
"""
from __future__ import annotations

import asyncio
import contextlib
import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from findface_grpc import __version__
from findface_grpc.errors import InvalidArgument, PhotoUnavailable

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
CHUNK = 64 * 1024


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever the host name would resolve to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = self.pinned_sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As above, with TLS verified against the host name (SNI and certificate), not the address."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._context = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self.pinned_sock = self._context.wrap_socket(sock, server_hostname=self.host)


def url_origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, the port filled in; None for anything else."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


class PhotoFetcher:
    def __init__(
        self,
        max_bytes: int,
        timeout_s: float,
        allow_private: bool = False,
        allowed_networks: Sequence[str] = (),
        own_origins: Sequence[str] = (),
        resolver: Resolver = resolve,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.allowed_networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)
        self.own_origins = frozenset(origin for url in own_origins if (origin := url_origin(url)) is not None)
        self.resolver = resolver
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.user_agent = f"findface-grpc/{__version__} (photo fetch)"

    async def fetch(self, url: str, field: str) -> bytes:
        return await asyncio.to_thread(self.fetch_blocking, url, field)

    def allowed(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_unspecified or address.is_multicast:
            return False
        if any(address in network for network in self.allowed_networks):
            return True
        return self.allow_private or is_public(address)

    def fetch_blocking(self, url: str, field: str) -> bytes:
        deadline = time.monotonic() + self.timeout_s

        def refuse(why: str) -> InvalidArgument:
            return InvalidArgument(f"{field}: {why}")

        def unavailable(why: str) -> PhotoUnavailable:
            return PhotoUnavailable(f"{field}: {why}")

        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise refuse(f"not a valid URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise refuse("only http and https URLs are fetched")
        if parts.username is not None or parts.password is not None:
            raise refuse("URLs with a user name or password are not fetched; the photo must be public")
        host = parts.hostname
        if not host:
            raise refuse("the URL has no host")
        port = port or (443 if scheme == "https" else 80)
        try:
            addresses = self.resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise unavailable(f"cannot resolve {host!r}: {exc}") from None
        if not addresses:
            raise unavailable(f"{host!r} resolves to no address")
        own = (scheme, host.lower(), port) in self.own_origins
        parsed = []
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            if not own and not self.allowed(address):
                raise refuse(f"{host!r} resolves to {address}, which is not a public address; fetching from it is "
                             "not allowed (gateway settings allow_private_urls, url_allow_networks)")
            parsed.append(str(address))
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        last_error: Exception | None = None
        for address in parsed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                return self._get(scheme, host, port, address, target, deadline, refuse, unavailable)
            except InvalidArgument:
                raise
            except (OSError, http.client.HTTPException) as exc:
                last_error = exc
                log.debug("fetching %s from %s failed: %s", url, address, exc)
        if last_error is None or isinstance(last_error, TimeoutError):
            raise unavailable(f"no answer from {host!r} within {self.timeout_s:g} s")
        raise unavailable(f"cannot fetch from {host!r}: {type(last_error).__name__}: {last_error}")

    def _get(self, scheme: str, host: str, port: int, address: str, target: str, deadline: float,
             refuse: Callable[[str], InvalidArgument], unavailable: Callable[[str], PhotoUnavailable]) -> bytes:
        timeout = max(0.01, deadline - time.monotonic())
        if scheme == "https":
            conn: _PinnedHTTPConnection | _PinnedHTTPSConnection = _PinnedHTTPSConnection(host, port, address, timeout, self.ssl_context)
        else:
            conn = _PinnedHTTPConnection(host, port, address, timeout)
        response: http.client.HTTPResponse | None = None
        # Socket timeouts bound each read, not the fetch: a server dripping a byte at a time would never time out.
        # At the deadline the watchdog shuts the socket down, which ends whatever read is waiting.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            sock = getattr(conn, "pinned_sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.request("GET", target, headers={"User-Agent": self.user_agent, "Accept": "image/*",
                                                 "Connection": "close"})
            response = conn.getresponse()
            if 300 <= response.status < 400:
                location = response.getheader("Location", "")
                raise refuse(f"the URL redirects (HTTP {response.status} to {location!r}); redirects are not "
                             "followed, give the photo's direct URL")
            if response.status != 200:
                raise unavailable(f"the server answered HTTP {response.status} {response.reason}")
            length = response.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) > self.max_bytes:
                raise unavailable(f"the photo is {int(length) / 1e6:.1f} MB, over the limit of "
                                  f"{self.max_bytes / 1e6:g} MB")
            data = bytearray()
            # A closed reply is a complete one: http.client closes it as soon as the body's end is read (its
            # length reached, the last chunk, or the server's end of stream).
            while not response.isclosed():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                # The socket outlives conn.close() (which getresponse calls when the server will close) only while
                # the open reply's file object holds it; a closed reply has released it, so it is touched only here.
                conn.pinned_sock.settimeout(remaining)
                # read1: at most one read from the socket, so the deadline is looked at between any two.
                chunk = response.read1(min(CHUNK, self.max_bytes + 1 - len(data)))
                if not chunk:
                    if expired.is_set():
                        raise TimeoutError
                    break
                data += chunk
                if len(data) > self.max_bytes:
                    raise unavailable(f"the photo is over the limit of {self.max_bytes / 1e6:g} MB")
            if not data:
                raise unavailable("the server sent an empty body")
            return bytes(data)
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set():
                raise TimeoutError from exc
            raise
        finally:
            watchdog.cancel()
            if response is not None:
                response.close()
            conn.close()
            sock = getattr(conn, "pinned_sock", None)
            if sock is not None:
                sock.close()
