"""`splatforge serve` / `worker` refuse unsafe or impossible settings before starting anything."""

from __future__ import annotations

import pytest

from splatforge.cli import build_commands, parse_command_line
from splatforge.errors import SplatforgeError
from splatforge.serve.settings import ModelSpec, ServeConfig, UrlPolicy
from splatforge.serve_cli import main, serve_config


def test_binding_beyond_loopback_needs_an_api_key(capsys, monkeypatch):
    monkeypatch.delenv("SPLATFORGE_API_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--preset", "small", "--seed", "0"]) == 2
    assert "set an API key" in capsys.readouterr().err


def test_missing_or_empty_key_file_and_missing_checkpoint(tmp_path, capsys):
    assert main(["serve", "--api-key-file", str(tmp_path / "nope")]) == 2
    assert "cannot read the API key file" in capsys.readouterr().err
    (tmp_path / "empty").write_text("\n")
    assert main(["serve", "--api-key-file", str(tmp_path / "empty")]) == 2
    assert "is empty" in capsys.readouterr().err
    assert main(["worker", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_register_adds_both_subcommands_and_options_parse():
    assert [c.name for c in build_commands(["serve_cli"])] == ["serve", "worker"]
    _, opts = parse_command_line(["serve", "--workers", "2", "--allow-url-host", "10.0.0.0/8",
                                  "--allow-url-host", "db:5432", "--url-timeout", "3"])
    assert opts.workers == 2 and opts.model.allow_url_host == ("10.0.0.0/8", "db:5432")
    assert opts.model.url_timeout == 3.0
    _, opts = parse_command_line(["worker", "--preset", "small", "--test_input", "{}"])
    assert opts.model.preset == "small" and opts.test_input == "{}"


def test_option_defaults_are_the_library_defaults():
    """serve's defaults come from ServeConfig, ModelSpec and UrlPolicy, not from numbers of its own."""
    _, opts = parse_command_line(["serve"])
    config = ServeConfig()
    assert (opts.data_dir, opts.workers, opts.max_queue) == (config.data_dir, config.workers, config.max_queue)
    assert (opts.execution_timeout, opts.retention, opts.endpoint_id) == (
        config.execution_timeout_s, config.run_retention_s, config.endpoint_id)
    assert (opts.model.preset, opts.model.seed, opts.model.device) == (ModelSpec().preset, ModelSpec().seed,
                                                                       ModelSpec().device)
    assert opts.model.allow_url_host == UrlPolicy().allow and opts.model.url_timeout == UrlPolicy().read_timeout
    assert opts.model.max_pixels == config.limits.max_pixels
    assert (opts.worker_load_attempts, opts.worker_restart_backoff) == (config.worker_load_attempts,
                                                                        config.worker_restart_backoff_s)


def test_public_url_from_the_flag_or_else_the_environment(monkeypatch):
    monkeypatch.delenv("SPLATFORGE_PUBLIC_URL", raising=False)
    assert serve_config(parse_command_line(["serve"])[1]).public_url is None
    monkeypatch.setenv("SPLATFORGE_PUBLIC_URL", "https://env.example.com")
    assert serve_config(parse_command_line(["serve"])[1]).public_url == "https://env.example.com"
    _, opts = parse_command_line(["serve", "--public-url", "https://flag.example.com/base"])
    assert serve_config(opts).public_url == "https://flag.example.com/base"


def test_worker_load_settings_reach_the_config():
    _, opts = parse_command_line(["serve", "--worker-load-attempts", "5", "--worker-restart-backoff", "0.25"])
    config = serve_config(opts)
    assert (config.worker_load_attempts, config.worker_restart_backoff_s) == (5, 0.25)


@pytest.mark.parametrize("argv, message", [
    (["--public-url", "splat.example.com"], "must start with http:// or https://"),
    (["--worker-load-attempts", "0"], "must be at least 1"),
    (["--worker-restart-backoff", "-1"], "0 or more seconds"),
])
def test_bad_service_settings_are_refused_before_the_model_loads(tmp_path, capsys, argv, message):
    with pytest.raises(SplatforgeError, match=message):
        serve_config(parse_command_line(["serve", *argv])[1])
    # Through the command: refused before the model check (no checkpoint here, so it would fail otherwise).
    assert main(["serve", "--data-dir", str(tmp_path / "data"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
