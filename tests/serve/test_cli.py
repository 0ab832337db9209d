"""`splatforge serve` / `worker` refuse unsafe or impossible settings before starting anything."""

from __future__ import annotations

from splatforge.cli import build_commands, parse_command_line
from splatforge.serve.fetch import UrlPolicy
from splatforge.serve.service import ServeConfig
from splatforge.serve.workers import ModelSpec
from splatforge.serve_cli import main


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
