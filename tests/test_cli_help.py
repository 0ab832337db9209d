"""`--help` of every subcommand (found through the registry, not a hand-written list), and the
choices the command line offers agree with the library's."""

from __future__ import annotations

import subprocess
import sys
from typing import Literal, get_args, get_origin, get_type_hints

import pytest

from splatforge.cli import build_commands, parse_command_line

COMMANDS = list(build_commands())


def _help(argv: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "250")  # one help entry per line
    with pytest.raises(SystemExit) as exit_info:
        parse_command_line(argv)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_the_registry_holds_every_area():
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names))
    assert {"info", "fit", "fit-render", "train", "render", "eval", "demo", "view", "serve", "worker", "predict",
            "export-onnx", "compress", "convert"} <= set(names)


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_help_of_every_subcommand(command, capsys, monkeypatch):
    text = _help([command.name, "--help"], capsys, monkeypatch)
    assert text.startswith(f"usage: splatforge {command.name} [-h]")
    assert " ".join((command.description or command.help).split()) in " ".join(text.split())
    assert "Traceback" not in text


def test_train_help_shows_percent_signs_and_choices(capsys, monkeypatch):
    """A field comment with "%" ("decayed to 1% over max_steps") once crashed argparse's help."""
    text = _help(["train", "--help"], capsys, monkeypatch)
    assert "decayed to 1% over max_steps" in text
    assert "--strategy {default,mcmc}" in text and "--backend {auto,cpu,torch}" in text
    assert "--background FLOAT FLOAT FLOAT" in text
    assert "--module-option STR" in text and "--module-options" not in text


def test_top_level_help_lists_every_subcommand_with_its_help():
    done = subprocess.run([sys.executable, "-m", "splatforge.cli", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for command in COMMANDS:
        assert any(line.split(None, 1) == [command.name, command.help] for line in lines), command.name


def test_command_line_choices_match_the_library():
    from splatforge.fit2d.fit import LOSSES, FitConfig
    from splatforge.fit2d.model import BLENDS
    from splatforge.io.scene import FORMATS
    from splatforge.predict.sharp.presets import PRESETS
    from splatforge.predict_cli import Preset
    from splatforge.ship_cli import SceneFormat
    from splatforge.view.viewer import UP_DIRECTIONS
    from splatforge.view_cli import UpDirection

    assert get_args(Preset) == tuple(PRESETS)
    assert get_args(SceneFormat) == tuple(FORMATS)
    assert get_args(UpDirection) == tuple(UP_DIRECTIONS)
    hints = {name: get_args(t) for name, t in get_type_hints(FitConfig).items() if get_origin(t) is Literal}
    assert hints == {"blend": BLENDS, "loss": LOSSES, "backend": ("cpu", "torch")}
