"""`splatforge serve` (the self-hosted HTTP service) and `splatforge worker` (a RunPod worker).

`register(subparsers)` adds both subcommands to the `splatforge` command line.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from splatforge.errors import SplatforgeError

API_KEY_ENV = "SPLATFORGE_API_KEY"


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="default", help="predictor preset (default: default; 'small' for tests)")
    p.add_argument("--checkpoint", type=Path, default=None, help="model weights file")
    p.add_argument("--seed", type=int, default=None,
                   help="random weights from this seed instead of a checkpoint (tests, benchmarks)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="intra-op threads per worker (default: CPU cores / workers)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="largest input image in pixels (default: splatforge.core.images.DEFAULT_MAX_PIXELS)")
    p.add_argument("--allow-url-host", action="append", default=[], metavar="HOST[:PORT]|CIDR",
                   help="let image_url and webhooks reach this private host or network (repeatable)")
    p.add_argument("--url-timeout", type=float, default=15.0, help="connect/read timeout for image_url, s")


def _settings(args: argparse.Namespace, workers: int):
    from splatforge.core.images import DEFAULT_MAX_PIXELS
    from splatforge.serve.fetch import UrlPolicy
    from splatforge.serve.handler import ImageLimits
    from splatforge.serve.workers import ModelSpec

    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise SplatforgeError(f"checkpoint not found: {args.checkpoint}")
    threads = args.torch_threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    model = ModelSpec(preset=args.preset, checkpoint=str(args.checkpoint) if args.checkpoint else None,
                      seed=args.seed, device=args.device, torch_threads=threads)
    limits = ImageLimits(max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
    policy = UrlPolicy(allow=tuple(args.allow_url_host), connect_timeout=args.url_timeout,
                       read_timeout=args.url_timeout)
    return model, limits, policy


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _read_api_key(args: argparse.Namespace) -> str | None:
    if args.api_key_file is not None:
        try:
            key = args.api_key_file.read_text().strip()
        except OSError as err:
            raise SplatforgeError(f"cannot read the API key file {args.api_key_file}: {err.strerror}") from None
        if not key:
            raise SplatforgeError(f"the API key file {args.api_key_file} is empty")
        return key
    return os.environ.get(API_KEY_ENV) or None


def _cmd_serve(args: argparse.Namespace) -> None:
    import logging

    import uvicorn

    from splatforge.serve.app import create_app
    from splatforge.serve.service import ServeConfig

    api_key = _read_api_key(args)
    if api_key is None and not _is_loopback(args.host):
        raise SplatforgeError(f"binding to {args.host} exposes the service beyond this machine; set an API key "
                              f"with --api-key-file or ${API_KEY_ENV}")
    if args.workers < 1 or args.max_queue < 1:
        raise SplatforgeError("--workers and --max-queue must be at least 1")
    model, limits, policy = _settings(args, args.workers)
    config = ServeConfig(data_dir=args.data_dir, workers=args.workers, max_queue=args.max_queue, model=model,
                         limits=limits, url_policy=policy, execution_timeout_s=args.execution_timeout,
                         endpoint_id=args.endpoint_id, api_key=api_key, run_retention_s=args.retention,
                         sweep_interval_s=0.5)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config)
    print(f"splatforge serve: http://{args.host}:{args.port}/v2/{args.endpoint_id or '<any id>'}/ "
          f"({args.workers} worker(s), preset {args.preset}, data in {args.data_dir})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5)


def _cmd_worker(args: argparse.Namespace) -> None:
    from splatforge.serve.runpod_worker import start_runpod_worker

    model, limits, policy = _settings(args, 1)
    # The runpod SDK reads its own flags (--test_input, --rp_log_level, ...) from sys.argv.
    sys.argv = [sys.argv[0]] + [a for name in ("test_input", "rp_log_level")
                                for a in ((f"--{name}", getattr(args, name)) if getattr(args, name) else ())]
    start_runpod_worker(model, limits=limits, url_policy=policy)


def register(subparsers) -> None:
    """Add `serve` and `worker` to the `splatforge` subcommands."""
    p = subparsers.add_parser("serve", help="HTTP service (RunPod serverless API): image in, 3D Gaussians out")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (beyond loopback needs an API key)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", type=Path, default=Path("splatforge-serve"), help="job database and results")
    p.add_argument("--workers", type=int, default=1, help="inference worker processes")
    p.add_argument("--max-queue", type=int, default=64, help="queued jobs before /run answers 429")
    p.add_argument("--execution-timeout", type=float, default=600.0,
                   help="seconds a job may run unless its policy says otherwise")
    p.add_argument("--retention", type=float, default=1800.0, help="seconds /run results are kept")
    p.add_argument("--endpoint-id", default=None, help="answer only under /v2/<this id>/ (default: any id)")
    p.add_argument("--api-key-file", type=Path, default=None,
                   help=f"file holding the API key clients must send (or set ${API_KEY_ENV})")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    _add_model_options(p)
    p.set_defaults(func=_cmd_serve)

    w = subparsers.add_parser("worker", help="RunPod serverless worker running the same image-to-splat handler")
    _add_model_options(w)
    w.add_argument("--test_input", default=None, help="run one job locally from this JSON and exit (runpod SDK)")
    w.add_argument("--rp_log_level", default=None, help="runpod SDK log level")
    w.set_defaults(func=_cmd_worker)


def main(argv: list[str] | None = None) -> int:
    """`python -m splatforge.serve_cli serve|worker ...`: these two commands without the rest of the CLI."""
    from .cli import run

    parser = argparse.ArgumentParser(prog="splatforge")
    register(parser.add_subparsers(dest="command", required=True))
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
