"""`splatforge serve` (the self-hosted HTTP service) and `splatforge worker` (a RunPod worker).

`register(commands)` adds both subcommands to the `splatforge` command line. Their defaults are
the library's (ServeConfig, ModelSpec, ImageLimits, UrlPolicy), read from those dataclasses in
`splatforge.serve.settings`, which imports only the standard library: `--help` loads neither the
predictor nor numpy, Pillow, pydantic or FastAPI.
"""

import ipaddress
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional, Sequence

from splatforge._cli_util import Commands, flattened
from splatforge.errors import SplatforgeError

API_KEY_ENV = "SPLATFORGE_API_KEY"


def _model_options():
    """What both commands take: the predictor, input limits and the URL policy (defaults: the library's)."""
    import tyro

    from splatforge.predict_cli import Preset
    from splatforge.serve.settings import ImageLimits, ModelSpec, UrlPolicy

    @dataclass
    class ModelOptions:
        preset: Preset = ModelSpec.preset  # predictor preset ('small' for tests)
        checkpoint: Optional[Path] = None  # model weights file (default: the official checkpoint)
        seed: Optional[int] = ModelSpec.seed  # random weights from this seed instead of a checkpoint (tests)
        device: str = ModelSpec.device  # torch device (cpu, cuda, cuda:1, ...)
        torch_threads: Optional[int] = None  # intra-op threads per worker (default: CPU cores / workers)
        max_pixels: int = ImageLimits.max_pixels  # largest input image, width x height
        # let image_url and webhooks reach this private host, host:port or network (CIDR) (repeatable)
        allow_url_host: tyro.conf.UseAppendAction[tuple[str, ...]] = UrlPolicy.allow
        url_timeout: float = UrlPolicy.read_timeout  # connect and read timeout for image_url and webhooks, s

    return ModelOptions


def _settings(opts, workers: int):
    from splatforge.serve.settings import ImageLimits, ModelSpec, UrlPolicy

    if opts.checkpoint is not None and not opts.checkpoint.is_file():
        raise SplatforgeError(f"checkpoint not found: {opts.checkpoint}")
    threads = opts.torch_threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    model = ModelSpec(preset=opts.preset, checkpoint=str(opts.checkpoint) if opts.checkpoint else None,
                      seed=opts.seed, device=opts.device, torch_threads=threads)
    limits = ImageLimits(max_pixels=opts.max_pixels)
    policy = UrlPolicy(allow=tuple(opts.allow_url_host), connect_timeout=opts.url_timeout,
                       read_timeout=opts.url_timeout)
    return model, limits, policy


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _read_api_key(args) -> Optional[str]:
    if args.api_key_file is not None:
        try:
            key = args.api_key_file.read_text().strip()
        except OSError as err:
            raise SplatforgeError(f"cannot read the API key file {args.api_key_file}: {err.strerror}") from None
        if not key:
            raise SplatforgeError(f"the API key file {args.api_key_file} is empty")
        return key
    return os.environ.get(API_KEY_ENV) or None


def _serve_options():
    import tyro

    from splatforge.serve.settings import PUBLIC_URL_ENV, ServeConfig

    ModelOptions = _model_options()

    @dataclass
    class ServeOptions:
        host: str = "127.0.0.1"  # address to bind (beyond loopback needs an API key)
        port: int = 8000  # port to bind
        data_dir: Path = ServeConfig.data_dir  # job database and results
        workers: int = ServeConfig.workers  # inference worker processes
        max_queue: int = ServeConfig.max_queue  # queued jobs before /run answers 429
        # seconds a job may run unless its policy says otherwise
        execution_timeout: float = ServeConfig.execution_timeout_s
        retention: float = ServeConfig.run_retention_s  # seconds /run results are kept
        endpoint_id: Optional[str] = ServeConfig.endpoint_id  # answer only under /v2/<this id>/ (default: any id)
        # base URL clients reach the service at (e.g. https://splat.example.com behind a proxy), for result links
        public_url: Annotated[Optional[str], tyro.conf.arg(help_behavior_hint=(
            f"(default: ${PUBLIC_URL_ENV}, else the base URL of each request)"))] = None
        # failed model loads in a row per worker before queued jobs end FAILED
        worker_load_attempts: int = ServeConfig.worker_load_attempts
        # seconds to wait after a failed model load (doubling per failure, up to 60 s)
        worker_restart_backoff: float = ServeConfig.worker_restart_backoff_s
        api_key_file: Optional[Path] = None  # file holding the API key clients must send (or set $SPLATFORGE_API_KEY)
        log_level: Literal["debug", "info", "warning", "error"] = "info"
        model: flattened(ModelOptions) = field(default_factory=ModelOptions)

    return ServeOptions


def _cmd_serve(args) -> None:
    import logging

    import uvicorn

    from splatforge.serve.app import create_app
    from splatforge.serve.workers import check_model

    api_key = _read_api_key(args)
    if api_key is None and not _is_loopback(args.host):
        raise SplatforgeError(f"binding to {args.host} exposes the service beyond this machine; set an API key "
                              f"with --api-key-file or ${API_KEY_ENV}")
    config = serve_config(args, api_key)
    check_model(config.model)  # a model that cannot load stops here, before anything binds or a job is accepted
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config)
    print(f"splatforge serve: http://{args.host}:{args.port}/v2/{args.endpoint_id or '<any id>'}/ "
          f"({args.workers} worker(s), preset {args.model.preset}, data in {args.data_dir}"
          f"{f', result links under {config.public_url}' if config.public_url else ''})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5)


def serve_config(args, api_key: Optional[str] = None):
    """The `ServeConfig` that `splatforge serve` runs with, from its parsed options. Bad values
    raise SplatforgeError before anything starts."""
    from splatforge.serve.settings import ServeConfig, check_public_url

    if args.workers < 1 or args.max_queue < 1 or args.worker_load_attempts < 1:
        raise SplatforgeError("--workers, --max-queue and --worker-load-attempts must be at least 1")
    if args.worker_restart_backoff < 0:
        raise SplatforgeError("--worker-restart-backoff must be 0 or more seconds")
    model, limits, policy = _settings(args.model, args.workers)
    # Without --public-url, ServeConfig's own default applies: $SPLATFORGE_PUBLIC_URL.
    public_url = {} if args.public_url is None else {"public_url": args.public_url}
    config = ServeConfig(data_dir=args.data_dir, workers=args.workers, max_queue=args.max_queue, model=model,
                         limits=limits, url_policy=policy, execution_timeout_s=args.execution_timeout,
                         endpoint_id=args.endpoint_id, api_key=api_key, run_retention_s=args.retention,
                         worker_load_attempts=args.worker_load_attempts,
                         worker_restart_backoff_s=args.worker_restart_backoff, **public_url)
    check_public_url(config.public_url)
    return config


def _worker_options():
    import tyro

    ModelOptions = _model_options()

    @dataclass
    class WorkerOptions:
        model: flattened(ModelOptions) = field(default_factory=ModelOptions)
        # run one job locally from this JSON and exit (the runpod SDK's flag)
        test_input: Annotated[Optional[str], tyro.conf.arg(name="test_input")] = None
        rp_log_level: Annotated[Optional[str], tyro.conf.arg(name="rp_log_level")] = None  # runpod SDK log level

    return WorkerOptions


def _cmd_worker(args) -> None:
    from splatforge.serve.runpod_worker import start_runpod_worker

    model, limits, policy = _settings(args.model, 1)
    # The runpod SDK reads its own flags (--test_input, --rp_log_level, ...) from sys.argv.
    sys.argv = [sys.argv[0]] + [a for name in ("test_input", "rp_log_level")
                                for a in ((f"--{name}", getattr(args, name)) if getattr(args, name) else ())]
    start_runpod_worker(model, limits=limits, url_policy=policy)


def register(commands: Commands) -> None:
    """Add `serve` and `worker` to the `splatforge` subcommands."""
    commands.add("serve", "HTTP service (RunPod serverless API): image in, 3D Gaussians out",
                 _serve_options, _cmd_serve)
    commands.add("worker", "RunPod serverless worker running the same image-to-splat handler",
                 _worker_options, _cmd_worker)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m splatforge.serve_cli serve|worker ...`: these two commands without the rest of the CLI."""
    from splatforge.cli import build_commands, find_command
    from splatforge._cli_util import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    command, status = find_command(build_commands(["serve_cli"]), argv)
    return status if command is None else run_command(command, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
