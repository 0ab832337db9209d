"""Shared pieces of the serve tests: small images, local HTTP servers on 127.0.0.1, and apps.

Everything here talks to 127.0.0.1 only; every server is bounded (it stops with its fixture)."""

from __future__ import annotations

import base64
import functools
import io
import socket
import threading
import time
import zlib
import struct
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image


def png_bytes(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1),
                    rng.integers(0, 256, size=(height, width))], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@functools.lru_cache(maxsize=None)
def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid grayscale PNG of width x height black pixels, a few hundred KB on disk.

    The deflate stream is one independently compressed block of 1000 rows (a full flush resets
    the history) repeated, so building it costs 1/20 of compressing every row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = 1000
    assert height % rows == 0
    block = (b"\x00" + b"\x00" * width) * rows
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = raw.compress(block) + raw.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(height // rows):
        adler = zlib.adler32(block, adler)
    stream = b"\x78\xda" + deflated * (height // rows) + b"\x03\x00" + struct.pack(">I", adler & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


class _Handler(BaseHTTPRequestHandler):
    image = b""
    received: list = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path == "/image.png":
            return self._send(200, self.image, "image/png")
        if parts.path == "/slow.png":
            time.sleep(float(query.get("s", ["1"])[0]))
            return self._send(200, self.image, "image/png")
        if parts.path == "/text":
            return self._send(200, b"hello, not an image", "text/plain")
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query.get("to", ["/redirect"])[0])  # no target: a loop
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if parts.path == "/huge":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            chunk = b"\x00" * (64 << 10)
            try:
                for _ in range(2000):  # at most 128 MB, far past any limit under test
                    self.wfile.write(chunk)
            except OSError:
                pass
            return None
        return self._send(404, b"not found", "text/plain")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        type(self).received.append((self.path, body))
        if self.path == "/flaky-hook" and sum(1 for p, _ in type(self).received if p == self.path) <= 2:
            return self._send(500, b"{}", "application/json")  # the first two deliveries fail
        return self._send(200, b"{}", "application/json")

    def _send(self, status, data, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class LocalServer:
    def __init__(self):
        handler = type("Handler", (_Handler,), {"image": png_bytes(), "received": []})
        self.handler = handler
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def received(self) -> list:
        return self.handler.received

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class SilentServer:
    """Accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except OSError:
                continue

    def url(self, path: str = "/image.png") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self._stop.set()
        self.thread.join(2)
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.fixture
def local_server():
    server = LocalServer()
    yield server
    server.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05):
    """Poll `predicate` until it returns a truthy value (returned) or `timeout` s pass (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


# ---------------------------------------------------------------------------- apps under test

from contextlib import contextmanager  # noqa: E402

from splatforge.serve import ModelSpec, ServeConfig, create_app  # noqa: E402
from splatforge.serve.fetch import UrlPolicy  # noqa: E402

SMALL = ModelSpec(preset="small", seed=0, torch_threads=1)


def small_config(data_dir, **overrides) -> ServeConfig:
    opts = dict(data_dir=data_dir, workers=1, model=SMALL, sweep_interval_s=0.1, webhook_backoff_s=0.1,
                url_policy=UrlPolicy(connect_timeout=2.0, read_timeout=3.0, total_timeout=10.0))
    opts.update(overrides)
    return ServeConfig(**opts)


@contextmanager
def serve_client(config: ServeConfig, wait_ready: bool = True):
    """A TestClient over the real app: worker processes with the small preset are started and
    stopped with it."""
    from fastapi.testclient import TestClient

    app = create_app(config)
    with TestClient(app, raise_server_exceptions=False) as client:
        if wait_ready:
            headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
            health = f"/v2/{config.endpoint_id or 'e'}/health"
            ready = wait_for(lambda: client.get(health, headers=headers).json()["workers"]["idle"] >= 1,
                             timeout=120, interval=0.2)
            assert ready, "the worker process did not load the small model within 120 s"
        yield client


def wait_terminal(client, job_id, timeout=60.0, headers=None):
    terminal = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")
    body = wait_for(lambda: (lambda b: b if b.get("status") in terminal else None)(
        client.get(f"/v2/e/status/{job_id}", headers=headers or {}).json()), timeout=timeout)
    assert body is not None, f"job {job_id} did not finish within {timeout} s"
    return body


# ---------------------------------------------------------------------------- a real server process

import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class ServerProcess:
    """`splatforge serve` with the small preset as a real process on 127.0.0.1."""

    def __init__(self, data_dir: Path, api_key: str = "test-key", port: int | None = None,
                 extra: tuple[str, ...] = ()):
        self.data_dir, self.api_key = Path(data_dir), api_key
        self.port = port or free_port()
        self.extra = extra
        self.proc = None
        self.log = self.data_dir.parent / f"server-{self.port}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2"

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"}

    def start(self, timeout: float = 120.0) -> "ServerProcess":
        env = {**os.environ, "SPLATFORGE_API_KEY": self.api_key}
        cmd = [sys.executable, "-m", "splatforge.serve_cli", "serve", "--preset", "small", "--seed", "0", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--workers", "1", "--torch-threads", "1", "--log-level", "warning",
               *self.extra]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                health = httpx.get(f"{self.base}/e/health", headers=self.headers, timeout=2).json()
            except (httpx.HTTPError, ValueError):
                return False
            return health["workers"]["idle"] >= 1

        assert wait_for(ready, timeout=timeout, interval=0.2), f"server not ready: {self.log.read_text()[-2000:]}"
        return self

    def kill(self) -> None:
        """SIGKILL the server; its worker processes then exit on their own (their pipe closes)."""
        kids = _children(self.proc.pid)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._reap(kids)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        kids = _children(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._reap(kids)

    @staticmethod
    def _reap(kids: list[int]) -> None:
        if not wait_for(lambda: not any(_alive(k) for k in kids), timeout=15, interval=0.1):
            for k in kids:  # only the worker processes this server started
                if _alive(k):
                    os.kill(k, signal.SIGKILL)


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory):
    """One real server process for the runpod-client and OpenAPI tests, with an image server
    on the allow-list."""
    images = LocalServer()
    server = ServerProcess(tmp_path_factory.mktemp("shared") / "data",
                           extra=("--allow-url-host", f"127.0.0.1:{images.port}", "--max-queue", "8")).start()
    try:
        yield server, images
    finally:
        server.stop()
        images.close()
