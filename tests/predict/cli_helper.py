"""Run the predict commands the way splatforge.cli.main runs registered modules."""

from __future__ import annotations

import argparse

from splatforge.errors import SplatforgeError


def run(argv: list[str]) -> int:
    from splatforge import predict_cli

    parser = argparse.ArgumentParser(prog="splatforge")
    sub = parser.add_subparsers(dest="command", required=True)
    predict_cli.register(sub)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except SplatforgeError as exc:
        print(f"splatforge {args.command}: error: {exc}")
        return 2
    return 0
