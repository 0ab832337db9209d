"""image_url and webhook fetching refuses every non-public destination, on every redirect hop,
and bounds time and size."""

from __future__ import annotations

import pytest

from splatforge.errors import SplatforgeError
from splatforge.serve.fetch import UrlPolicy, UrlRefused, check_url, fetch_url, is_public_address


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x.png", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/a.png",
    "http://[::1]/a.png", "http://0.0.0.0/", "http://224.0.0.1/", "http://100.64.1.1/", "http://[::ffff:127.0.0.1]/",
    "http://192.168.1.1:8080/", "http://[fe80::1]/", "http://240.0.0.1/",
])
def test_private_loopback_link_local_multicast_reserved_addresses_are_refused(url):
    with pytest.raises(UrlRefused, match="loopback, private, link-local"):
        fetch_url(url, UrlPolicy())


@pytest.mark.parametrize("url,message", [
    ("file:///etc/passwd", "only http and https"), ("ftp://example.com/a.png", "only http and https"),
    ("gopher://x/", "only http and https"), ("http://user:pw@example.com/", "credentials"),
    ("http:///nohost", "no host"), ("", "empty"), ("http://example.com:99999/", "malformed"),
])
def test_bad_schemes_and_malformed_urls_are_refused(url, message):
    with pytest.raises(UrlRefused, match=message):
        check_url(url, UrlPolicy(resolver=lambda h, p: ["93.184.215.14"]))


def test_a_hostname_resolving_to_a_private_address_is_refused_without_connecting():
    asked = []

    def resolver(host, port):
        asked.append((host, port))
        return ["93.184.215.14", "10.1.2.3"]  # one public, one private: refused

    with pytest.raises(UrlRefused, match="10.1.2.3"):
        fetch_url("https://images.example.com/cat.png", UrlPolicy(resolver=resolver))
    assert asked == [("images.example.com", 443)]


def test_localhost_by_name_is_refused():
    with pytest.raises(UrlRefused, match="loopback"):
        fetch_url("http://localhost:9/a.png", UrlPolicy())


def test_public_addresses_pass_the_address_check():
    assert is_public_address("93.184.215.14") and is_public_address("2606:4700::1111")
    assert not is_public_address("127.0.0.1") and not is_public_address("::ffff:10.0.0.1")
    assert not is_public_address("not an address")


def test_allow_list_admits_a_named_host_and_port_only(local_server):
    data = fetch_url(local_server.url("/image.png"), UrlPolicy(allow=(f"127.0.0.1:{local_server.port}",)))
    assert data.startswith(b"\x89PNG")
    with pytest.raises(UrlRefused, match="loopback"):
        fetch_url(local_server.url("/image.png"), UrlPolicy(allow=("127.0.0.1:1",)))


def test_every_redirect_hop_is_checked_again(local_server):
    policy = UrlPolicy(allow=(f"127.0.0.1:{local_server.port}",))  # the first hop only
    for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x.png", "http://127.0.0.1:1/x.png",
                   "http://[::1]:8080/"):
        with pytest.raises(UrlRefused, match="loopback, private, link-local"):
            fetch_url(local_server.url(f"/redirect?to={target}"), policy)
    # A redirect that stays on the allowed host is followed.
    assert fetch_url(local_server.url("/redirect?to=/image.png"), policy).startswith(b"\x89PNG")


def test_redirect_loops_end(local_server):
    policy = UrlPolicy(allow=(f"127.0.0.1:{local_server.port}",), max_redirects=3)
    with pytest.raises(UrlRefused, match="redirects"):
        fetch_url(local_server.url("/redirect"), policy)


def test_a_server_that_never_answers_times_out(silent_server):
    policy = UrlPolicy(allow=("127.0.0.1",), connect_timeout=0.5, read_timeout=0.5, total_timeout=5)
    with pytest.raises(UrlRefused, match="did not answer|stopped sending"):
        fetch_url(silent_server.url(), policy)


def test_a_huge_download_stops_at_the_byte_limit(local_server):
    policy = UrlPolicy(allow=("127.0.0.1",), max_bytes=1 << 20)
    with pytest.raises(UrlRefused, match="more than the limit of 1,048,576 bytes"):
        fetch_url(local_server.url("/huge"), policy)


def test_http_errors_are_reported(local_server):
    with pytest.raises(UrlRefused, match="HTTP 404"):
        fetch_url(local_server.url("/missing"), UrlPolicy(allow=("127.0.0.1",)))


def test_refusals_are_splatforge_errors():
    assert issubclass(UrlRefused, SplatforgeError)


def test_default_resolver_result_is_checked(monkeypatch):
    import socket

    def fake_getaddrinfo(host, port, *args, **kwargs):
        assert host == "photos.example.net"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.7.7", port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(UrlRefused, match="192.168.7.7"):
        fetch_url("http://photos.example.net/a.png", UrlPolicy())


class _BrokenServer:
    """On 127.0.0.1: reads a request's first bytes, then fails it: `garbage` answers a line that is
    neither HTTP nor TLS, `hang-up` closes the connection, `mute` never answers."""

    def __init__(self, behaviour: str):
        import socket
        import threading

        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(1024)
                if self.behaviour == "garbage":
                    conn.sendall(b"garbage\r\n\r\n")
                elif self.behaviour == "mute":
                    self.done.wait(10)

    def close(self):
        import socket

        self.done.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(15)


@pytest.fixture
def opened_sockets(monkeypatch):
    """Every socket fetch.py opens, through the real socket.create_connection."""
    import socket

    opened = []
    real = socket.create_connection

    def counting(*args, **kwargs):
        sock = real(*args, **kwargs)
        opened.append(sock)
        return sock

    monkeypatch.setattr(socket, "create_connection", counting)
    return opened


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("behaviour", ["garbage", "hang-up", "mute"])
def test_the_connection_is_closed_when_the_request_fails(opened_sockets, behaviour, scheme, method):
    from splatforge.serve.fetch import request_url

    server = _BrokenServer(behaviour)
    try:
        url = f"{scheme}://127.0.0.1:{server.port}/image.png"
        policy = UrlPolicy(allow=(f"127.0.0.1:{server.port}",), connect_timeout=2, read_timeout=0.3)
        with pytest.raises(UrlRefused, match="cannot fetch|TLS failed|did not answer"):
            request_url(url, policy, method=method, body=b"{}" if method == "POST" else None)
    finally:
        server.close()
    assert len(opened_sockets) == 1
    assert opened_sockets[0].fileno() == -1, "the socket of the failed request is still open"
