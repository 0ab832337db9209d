"""The `splatforge` subcommand registry, and parsing a command's options with tyro.

Each command is a name, a one-line help, a function returning its options type (a dataclass,
turned into flags by tyro: help from the fields' comments, `Literal` fields as choices, nested
config dataclasses flattened with `tyro.conf.OmitArgPrefixes`) and a function that runs it with
the parsed options. The options type is built only when its command runs, so `splatforge --help`
imports neither tyro nor any command's library code (torch, Numba).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

from .errors import SplatforgeError

PROG = "splatforge"


@dataclass(frozen=True)
class Command:
    name: str  # what the user types after `splatforge`
    help: str  # one line, shown by `splatforge --help`
    options: Callable[[], Any]  # returns the options type; imports what it needs only when called
    run: Callable[[Any], object]  # runs the command with the parsed options; user errors raise SplatforgeError
    description: Optional[str] = None  # longer text at the top of `splatforge NAME --help` (default: help)


@dataclass
class Commands:
    """The subcommands, in the order they were added. A command module's `register(commands)`
    calls `commands.add(...)` once per subcommand."""

    by_name: dict[str, Command] = field(default_factory=dict)

    def add(self, name: str, help: str, options: Callable[[], Any], run: Callable[[Any], object],
            description: Optional[str] = None) -> None:
        if name in self.by_name:
            raise ValueError(f"the subcommand {name!r} is registered twice")
        self.by_name[name] = Command(name, help, options, run, description)

    def __iter__(self) -> Iterator[Command]:
        return iter(self.by_name.values())

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def __getitem__(self, name: str) -> Command:
        return self.by_name[name]


def parse_options(command: Command, argv: Sequence[str], prog: str = PROG) -> Any:
    """`argv` (the arguments after the command's name) parsed into the command's options.
    Bad arguments print a usage error and raise SystemExit(2); --help prints and raises SystemExit(0)."""
    import tyro

    return tyro.cli(command.options(), args=list(argv), prog=f"{prog} {command.name}",
                    description=command.description or command.help,
                    config=(tyro.conf.PositionalMetavarFromFieldName,))


def run_command(command: Command, argv: Sequence[str], prog: str = PROG) -> int:
    """Parse and run one command; a SplatforgeError becomes `PROG NAME: error: ...` on stderr, status 2."""
    options = parse_options(command, argv, prog)
    try:
        command.run(options)
    except SplatforgeError as exc:
        print(f"{prog} {command.name}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def flattened(cls: type) -> Any:
    """`cls` (a dataclass) as a group of options named without a prefix: `--max-steps`, not
    `--config.max-steps`. Only this level loses its prefix: a dataclass nested inside `cls`
    keeps its own (`--fitted.refine-start`)."""
    from typing import Annotated

    import tyro

    return Annotated[cls, tyro.conf.arg(name="")]
