"""The `resnetkit` command: argument parsing and printing only; each command calls the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

import torch

from . import registry
from .model import ResNet
from .spec import SpecError
from .summary import count_macs, count_params, format_si, summary
from .weights import WeightsError

log = logging.getLogger("resnetkit")

# Errors that are the user's to fix: printed as one line, never as a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    SpecError,
    registry.UnknownModelError,
    WeightsError,
    FileNotFoundError,
    FileExistsError,
)


def cmd_models(args: argparse.Namespace) -> int:
    names = registry.list_models(args.pattern)
    if not names:
        raise registry.UnknownModelError(f"no registered model matches {args.pattern!r}")
    name_width = max(len(n) for n in names)
    # Rows are printed as they are counted: the FLOP counter takes ~1 s on the deepest nets.
    print(f"{'name':<{name_width}}  {'params':>12}  {'MACs':>8}  {'input':>7}  description")
    for name in names:
        entry = registry.get_entry(name)
        # The meta device gives shapes without memory or weight initialisation.
        with torch.device("meta"):
            model = ResNet(entry.spec)
        size = f"{entry.spec.default_input_size}x{entry.spec.default_input_size}"
        macs = format_si(count_macs(model))
        print(
            f"{name:<{name_width}}  {count_params(model):>12,}  {macs:>8}  {size:>7}  "
            f"{entry.description}",
            flush=True,
        )
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    overrides = {}
    if args.num_classes is not None:
        overrides["num_classes"] = args.num_classes
    if args.input_size is not None:
        overrides["in_chans"] = args.input_size[0]
    model = registry.create_model(args.model, **overrides)
    print(summary(model, input_size=args.input_size, depth=args.depth))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnetkit", description="Build, train, inspect and export residual networks."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list registered models with params and MACs")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'resnet*'")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("summary", help="Keras-style table of a model's layers")
    p.add_argument("model", help="registered name or a .yaml/.json spec file")
    p.add_argument(
        "--input-size",
        nargs=3,
        type=int,
        metavar=("C", "H", "W"),
        default=None,
        help="input channels, height, width (default: the model's native size)",
    )
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--depth", type=int, default=2, help="1 = stages, 2 = blocks, 3 = layers")
    p.set_defaults(func=cmd_summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except USER_ERRORS as exc:
        print(f"resnetkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
    except KeyboardInterrupt:
        print(f"resnetkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
