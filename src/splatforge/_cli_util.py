"""Helpers shared by the subcommand modules: argparse options generated from config dataclasses."""

from __future__ import annotations

import argparse


def _parse_floats(text: str) -> tuple:
    try:
        return tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_dataclass_options(parser: argparse.ArgumentParser, cls, skip: tuple = ()) -> None:
    """One --option per dataclass field, typed and defaulted from the field, help from its comment:
    booleans get --name / --no-name, tuples take comma-separated numbers."""
    import inspect
    from dataclasses import MISSING, fields

    comments = {}
    for line in inspect.getsource(cls).splitlines():
        name, _, rest = line.strip().partition(":")
        if "#" in rest and name.isidentifier():
            comments[name] = rest.split("#", 1)[1].strip()
    for f in fields(cls):
        if f.name in skip or f.default_factory is not MISSING:  # dicts and lists: Python API only
            continue
        default = f.default if f.default is not MISSING else None
        flag = "--" + f.name.replace("_", "-")
        text = f"{comments.get(f.name, '')} (default: {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=text)
        elif isinstance(default, tuple):
            parser.add_argument(flag, dest=f.name, type=_parse_floats, default=default, help=text)
        elif default is None:  # Optional[...]: the annotation (a string under postponed evaluation) says which
            kind = int if "int" in str(f.type) else float if "float" in str(f.type) else str
            parser.add_argument(flag, dest=f.name, type=kind, default=None, help=text)
        else:
            parser.add_argument(flag, dest=f.name, type=type(default), default=default, help=text)


def dataclass_from_args(cls, args: argparse.Namespace, **extra):
    from dataclasses import fields

    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}, **extra)
