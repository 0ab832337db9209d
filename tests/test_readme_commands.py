"""Every `splatforge ...` command line in README.md parses (parse only: no job runs).

Commands are taken from the fenced code blocks (a line whose program is `splatforge` or
`.venv/bin/splatforge`, its trailing `# comment` dropped, `\\` continuations joined) and from
inline code spans (`splatforge train ...`). Optional groups written `[--opt a|b]` are
documentation syntax: each line is parsed without them, and once per group and alternative.
Placeholders such as CAPTURE or photo.jpg parse as paths; nothing is opened.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from splatforge.cli import build_commands, parse_command_line

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`(splatforge [^`]+)`")
OPTIONAL = re.compile(r"\s*\[([^\[\]]+)\]")


def _command_words(line: str) -> list[str] | None:
    """The arguments after `splatforge`, or None when the line runs something else."""
    words = shlex.split(line, comments=True)
    if len(words) < 2 or not (words[0] == "splatforge" or words[0].endswith("/bin/splatforge")):
        return None
    return words[1:]


def _expand_optional(line: str) -> list[str]:
    """`a [--x 1|2] [--y]` -> ["a", "a --x 1", "a --x 2", "a --y"]."""
    groups = OPTIONAL.findall(line)
    base = OPTIONAL.sub("", line)
    variants = [base]
    for group in groups:
        alternatives = [group]
        words = group.split()
        for i, word in enumerate(words):
            if "|" in word:
                alternatives = [" ".join(words[:i] + [alt] + words[i + 1:]) for alt in word.split("|")]
                break
        variants += [f"{base} {alt}" for alt in alternatives]
    return variants


def readme_command_lines(text: str) -> list[str]:
    lines: list[str] = []
    for block in FENCE.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            command, _, comment = line.partition(" #")
            if _command_words(command.strip().replace("[", "").replace("]", "")) is not None:
                lines.append(command.strip())
            lines += INLINE.findall(comment)
    prose = FENCE.sub("", text)
    lines += INLINE.findall(prose)
    return lines


def _cases() -> list[str]:
    return [variant for line in readme_command_lines(README.read_text()) for variant in _expand_optional(line)]


CASES = _cases()


def test_the_readme_shows_commands_of_most_subcommands():
    shown = {_command_words(case)[0] for case in CASES}
    assert len(CASES) >= 20 and len(shown) >= 10, shown
    assert shown <= {c.name for c in build_commands()}


@pytest.mark.parametrize("line", CASES)
def test_readme_command_parses(line, capsys):
    argv = _command_words(line)
    command, options = parse_command_line(argv)
    assert command.name == argv[0] and options is not None


def test_optional_groups_expand_to_each_alternative():
    assert _expand_optional("splatforge fit a.jpg [--blend alpha|sum] [--quiet]") == [
        "splatforge fit a.jpg", "splatforge fit a.jpg --blend alpha", "splatforge fit a.jpg --blend sum",
        "splatforge fit a.jpg --quiet"]
    text = "x\n```bash\n.venv/bin/splatforge info a.ply   # or `splatforge info b.ply`\nls\n```\nsee `splatforge demo`."
    assert readme_command_lines(text) == [".venv/bin/splatforge info a.ply", "splatforge info b.ply",
                                          "splatforge demo"]
