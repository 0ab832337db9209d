"""The service's settings: `ServeConfig` and the parts it names (`ModelSpec`, `ImageLimits`,
`UrlPolicy`).

Only the standard library is imported here, so `splatforge serve --help` and `worker --help`
read these defaults without loading the predictor, numpy, Pillow, pydantic or FastAPI. The
modules that use the settings (`service`, `workers`, `handler`, `fetch`) import them from here.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

from splatforge.core.limits import DEFAULT_MAX_PIXELS
from splatforge.errors import SplatforgeError

PUBLIC_URL_ENV = "SPLATFORGE_PUBLIC_URL"

Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, as strings (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


@dataclass
class UrlPolicy:
    """What a user-given URL may reach, and how long and how much it may take
    (enforced by `splatforge.serve.fetch`)."""

    allow: tuple[str, ...] = ()  # hosts ("name", "name:port") or networks ("10.0.0.0/8") allowed although private
    connect_timeout: float = 5.0  # seconds to open the TCP (and TLS) connection
    read_timeout: float = 15.0  # seconds any single read may wait for data
    total_timeout: float = 60.0  # seconds for the whole fetch, redirects included
    max_bytes: int = 20 << 20  # largest body accepted
    max_redirects: int = 5
    resolver: Resolver = field(default=system_resolver, repr=False)

    def allows(self, host: str, port: int, address: Optional[str] = None) -> bool:
        """True when an allow-list entry names this host (or address), with or without its port,
        or a network holding the address."""
        names = {host.lower().strip("[]")} | ({address} if address else set())
        for entry in self.allow:
            entry = entry.lower().strip()
            if "/" in entry:
                try:
                    if address and ipaddress.ip_address(address) in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    pass
                continue
            if entry.startswith("["):
                name, _, entry_port = entry[1:].partition("]")
                entry_port = entry_port.lstrip(":")
            elif entry.count(":") == 1:
                name, entry_port = entry.split(":")
            else:
                name, entry_port = entry, ""
            if name in names and (not entry_port or entry_port == str(port)):
                return True
        return False


@dataclass
class ImageLimits:
    """What an input image may be."""

    max_pixels: int = DEFAULT_MAX_PIXELS  # width x height, checked from the header before decoding
    min_side: int = 8  # smallest width or height in pixels the network is given
    max_bytes: int = 20 << 20  # largest encoded image


@dataclass
class ModelSpec:
    """Which predictor each worker builds (see `splatforge.predict.build_predictor`)."""

    preset: str = "default"
    checkpoint: Optional[str] = None
    seed: Optional[int] = None  # random weights from this seed (no checkpoint): tests and benchmarks
    device: str = "cpu"
    torch_threads: int = 1  # intra-op threads per worker process


@dataclass
class ServeConfig:
    """Everything `splatforge serve` can be told; defaults suit one CPU machine."""

    data_dir: Path = Path("splatforge-serve")  # jobs.sqlite3 and results/ live here
    workers: int = 1  # inference worker processes, each with its own copy of the model
    max_queue: int = 64  # queued jobs accepted before /run answers 429
    model: ModelSpec = field(default_factory=ModelSpec)
    limits: ImageLimits = field(default_factory=ImageLimits)
    url_policy: UrlPolicy = field(default_factory=UrlPolicy)  # for image_url and webhooks
    execution_timeout_s: float = 600.0  # when the request's policy gives none
    max_attempts: int = 3  # runs a job gets when workers crash or the server restarts mid-job
    worker_load_attempts: int = 3  # failed model loads in a row per worker before queued jobs end FAILED
    worker_restart_backoff_s: float = 1.0  # wait after a failed model load (doubling, up to 60 s)
    run_retention_s: float = 1800.0  # how long /run results are kept (RunPod: 30 min)
    runsync_retention_s: float = 60.0  # how long /runsync results are kept (RunPod: 1 min)
    inline_limit: int = 64 << 20  # larger scene files are given as a download URL, not base64
    # Where clients reach this service (e.g. https://splat.example.com behind a proxy): the base
    # of result download URLs, in status bodies and webhooks. Default: $SPLATFORGE_PUBLIC_URL, else
    # the base URL of the request that submitted (or polls) the job.
    public_url: Optional[str] = field(default_factory=lambda: os.environ.get(PUBLIC_URL_ENV) or None)
    endpoint_id: Optional[str] = None  # if set, other endpoint ids in the path are 404
    api_key: Optional[str] = None  # required as Bearer token when set
    webhook_attempts: int = 3
    webhook_backoff_s: float = 2.0
    sweep_interval_s: float = 0.5


def check_public_url(url: Optional[str]) -> Optional[str]:
    """`url` (a `ServeConfig.public_url`) without a trailing slash, or SplatforgeError if it is not
    an http(s) base URL."""
    if url is None:
        return None
    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # raises for a bad port
    except ValueError as err:
        parts, problem = None, str(err)
    else:
        problem = ("it must start with http:// or https://" if parts.scheme not in ("http", "https")
                   else "it has no host" if not parts.hostname
                   else "it must not have a query or fragment" if parts.query or parts.fragment else None)
    if problem:
        raise SplatforgeError(f"public_url (or ${PUBLIC_URL_ENV}) {url!r} is not a base URL: {problem}; "
                              "give where clients reach the service, e.g. https://splat.example.com")
    return url.strip().rstrip("/")
