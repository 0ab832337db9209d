"""Outbound HTTP for user-given URLs (job images, webhooks) without server-side request forgery.

A user-given URL must not reach this machine or its private network (cloud metadata at
169.254.169.254, databases on 10.x, admin ports on 127.0.0.1). So, for every hop, redirects
included:

- only http and https; no credentials in the URL;
- the host name is resolved once, every address it resolves to must be a public unicast address
  (not loopback, private, link-local, multicast, reserved, unspecified, CGNAT, or IPv4 mapped onto
  any of those), unless the host is on an explicit allow-list;
- the connection goes to the address that was checked (no second DNS lookup that a rebinding
  attacker could answer differently); TLS still verifies the certificate against the host name;
- connect and read timeouts, an overall deadline, and a byte limit while streaming.

Example::

    policy = UrlPolicy(max_bytes=20 << 20)
    data = fetch_url("https://example.com/photo.jpg", policy)
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urljoin, urlsplit

from splatforge.errors import SplatforgeError
from splatforge.serve.settings import Resolver, UrlPolicy, system_resolver  # noqa: F401  (their old home)

_REDIRECTS = (301, 302, 303, 307, 308)
_BLOCKED_EXTRA = [ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("192.0.0.0/24"),
                  ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("64:ff9b:1::/48")]


class UrlRefused(SplatforgeError):
    """A URL that policy forbids (scheme, destination address, size) or that could not be fetched."""


def is_public_address(address: str) -> bool:
    """True only for globally routable unicast addresses."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return is_public_address(str(mapped))
    if (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global):
        return False
    return not any(ip in net for net in _BLOCKED_EXTRA if net.version == ip.version)


@dataclass
class _Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str


def check_url(url: str, policy: UrlPolicy) -> _Target:
    """Parse and vet one URL; returns the address to connect to. Raises UrlRefused."""
    if not isinstance(url, str) or not url:
        raise UrlRefused("the URL is empty")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as err:
        raise UrlRefused(f"malformed URL: {err}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused(f"only http and https URLs are fetched, not {scheme or 'a URL without a scheme'}")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("URLs with credentials (user:password@) are refused")
    host = parts.hostname
    if not host:
        raise UrlRefused("the URL has no host")
    port = port or (443 if scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        literal = ipaddress.ip_address(host)
        addresses = [str(literal)]
    except ValueError:
        try:
            addresses = policy.resolver(host, port)
        except (OSError, UnicodeError) as err:
            raise UrlRefused(f"cannot resolve host {host!r}: {getattr(err, 'strerror', None) or err}") from None
        if not addresses:
            raise UrlRefused(f"host {host!r} resolves to no address")
    for address in addresses:
        if not is_public_address(address) and not policy.allows(host, port, address):
            raise UrlRefused(
                f"refusing to fetch {scheme}://{host}:{port}: it resolves to {address}, a loopback, private, "
                "link-local, multicast or reserved address (add the host to the allow-list if it is trusted)")
    return _Target(scheme, host, port, path, addresses[0])


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: _Target, policy: UrlPolicy):
        super().__init__(target.host, target.port, timeout=policy.connect_timeout)
        self._address = target.address
        self._read_timeout = policy.read_timeout

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.settimeout(self._read_timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: _Target, policy: UrlPolicy):
        super().__init__(target.host, target.port, timeout=policy.connect_timeout,
                         context=ssl.create_default_context())
        self._address = target.address
        self._read_timeout = policy.read_timeout

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
        self.sock.settimeout(self._read_timeout)


def _open(target: _Target, policy: UrlPolicy, method: str, body: Optional[bytes], headers: dict):
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    conn = cls(target, policy)
    try:
        conn.request(method, target.path, body=body, headers={"User-Agent": "splatforge-serve", **headers})
        return conn, conn.getresponse()
    except BaseException:
        # http.client closes the socket itself only on ConnectionError; a timeout or a bad status
        # line would leave it open until garbage collection.
        conn.close()
        raise


def request_url(url: str, policy: UrlPolicy, *, method: str = "GET", body: Optional[bytes] = None,
                headers: Optional[dict] = None) -> tuple[int, bytes]:
    """One vetted request with vetted redirects; returns (status, body). Raises UrlRefused.

    Redirects are followed for GET only (a webhook POST is not re-sent elsewhere)."""
    deadline = time.monotonic() + policy.total_timeout
    for _ in range(policy.max_redirects + 1):
        if time.monotonic() > deadline:
            break
        target = check_url(url, policy)
        try:
            conn, response = _open(target, policy, method, body, headers or {})
        except (socket.timeout, TimeoutError):
            raise UrlRefused(f"{_short(url)} did not answer within the timeout") from None
        except ssl.SSLError as err:
            raise UrlRefused(f"TLS failed for {_short(url)}: {err.reason or err}") from None
        except (OSError, http.client.HTTPException) as err:
            raise UrlRefused(f"cannot fetch {_short(url)}: {getattr(err, 'strerror', None) or err}") from None
        try:
            if response.status in _REDIRECTS and method == "GET":
                location = response.getheader("Location")
                if not location:
                    raise UrlRefused(f"{_short(url)} redirects without a Location")
                url = urljoin(url, location)
                continue
            return response.status, _read_limited(response, url, policy, deadline)
        finally:
            conn.close()
    raise UrlRefused(f"more than {policy.max_redirects} redirects, or over {policy.total_timeout:g} s, "
                     f"fetching {_short(url)}")


def _read_limited(response, url: str, policy: UrlPolicy, deadline: float) -> bytes:
    declared = response.getheader("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > policy.max_bytes:
        raise UrlRefused(f"{_short(url)} is {int(declared):,} bytes, over the limit of {policy.max_bytes:,}")
    chunks, size = [], 0
    try:
        while True:
            if time.monotonic() > deadline:
                raise UrlRefused(f"{_short(url)} took longer than {policy.total_timeout:g} s")
            chunk = response.read1(64 << 10)
            if not chunk:
                break
            size += len(chunk)
            if size > policy.max_bytes:
                raise UrlRefused(f"{_short(url)} sent more than the limit of {policy.max_bytes:,} bytes")
            chunks.append(chunk)
    except (socket.timeout, TimeoutError):
        raise UrlRefused(f"{_short(url)} stopped sending data (read timeout {policy.read_timeout:g} s)") from None
    except (OSError, http.client.HTTPException) as err:
        raise UrlRefused(f"reading {_short(url)} failed: {err}") from None
    return b"".join(chunks)


def fetch_url(url: str, policy: UrlPolicy) -> bytes:
    """GET a user-given URL under `policy`; the body on HTTP 200. Raises UrlRefused."""
    status, data = request_url(url, policy)
    if status != 200:
        raise UrlRefused(f"{_short(url)} answered HTTP {status}, not 200")
    return data


def post_json(url: str, payload: dict, policy: UrlPolicy) -> int:
    """POST `payload` as JSON to a vetted URL (a webhook); returns the HTTP status."""
    body = json.dumps(payload).encode()
    status, _ = request_url(url, policy, method="POST", body=body,
                            headers={"Content-Type": "application/json"})
    return status


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."
