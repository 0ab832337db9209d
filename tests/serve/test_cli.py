"""`splatforge serve` / `worker` refuse unsafe or impossible settings before starting anything."""

from __future__ import annotations

import argparse

from splatforge.serve_cli import main, register


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


def test_register_adds_both_subcommands():
    parser = argparse.ArgumentParser(prog="splatforge")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", "--workers", "2", "--allow-url-host", "10.0.0.0/8"])
    assert args.workers == 2 and args.allow_url_host == ["10.0.0.0/8"] and callable(args.func)
    assert callable(parser.parse_args(["worker", "--preset", "small"]).func)
