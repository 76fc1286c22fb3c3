"""The `resnetkit` command: argument parsing and printing only; each command calls the library."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Sequence

import torch

from . import registry
from .checkpoint import CheckpointError
from .config import ConfigError, TrainConfig
from .data import DataError
from .export import FORMATS, ExportError
from .model import ResNet
from .predict import BACKENDS
from .pretrained import PretrainedError
from .spec import SpecError
from .summary import count_macs, count_params, format_si, summary
from .train import NonFiniteLossError, RunError
from .weights import WeightsError

log = logging.getLogger("resnetkit")

# Errors that are the user's to fix: printed as one line, never as a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    SpecError,
    registry.UnknownModelError,
    WeightsError,
    ConfigError,
    DataError,
    RunError,
    CheckpointError,
    ExportError,
    NonFiniteLossError,
    PretrainedError,
    FileNotFoundError,
    FileExistsError,
)

# `resnetkit train` flags -> TrainConfig fields (flags left unset keep the config's value).
TRAIN_FLAGS: tuple[tuple[str, dict], ...] = (
    ("--model", {"help": "registered name or .yaml/.json spec (default resnet20)"}),
    ("--data", {"help": "fashion-mnist, mnist, cifar10, cifar100, synthetic or folder:PATH"}),
    ("--data-dir", {"help": "where the dataset files are (or go with --download)"}),
    ("--epochs", {"type": int}),
    ("--max-steps", {"type": int, "help": "stop after this many optimizer steps"}),
    ("--batch-size", {"type": int}),
    ("--lr", {"type": float, "help": "peak learning rate"}),
    ("--optimizer", {"choices": ["sgd", "adamw"]}),
    ("--momentum", {"type": float}),
    ("--weight-decay", {"type": float}),
    ("--schedule", {"choices": ["step", "cosine", "onecycle", "linear", "constant"]}),
    ("--warmup-epochs", {"type": float}),
    ("--milestones", {"type": float, "nargs": "+", "help": "LR decay points (step schedule)"}),
    ("--milestone-unit", {"choices": ["epoch", "step"]}),
    ("--label-smoothing", {"type": float}),
    ("--crop-padding", {"type": int}),
    ("--cutout", {"type": int}),
    ("--precision", {"choices": ["fp32", "bf16", "fp16"]}),
    ("--device", {"help": "auto, cpu, cuda, cuda:1, ..."}),
    ("--threads", {"type": int}),
    ("--seed", {"type": int}),
    ("--subset", {"type": int, "help": "train on the first N images only"}),
    ("--image-size", {"type": int, "help": "image folders: side to resize/crop to"}),
    ("--val-fraction", {"type": float, "help": "hold out this share of train for evaluation"}),
    ("--num-workers", {"type": int, "help": "image folders: decoding worker processes"}),
    ("--drop-rate", {"type": float}),
    (
        "--pretrained",
        {
            "metavar": "TAG_OR_FILE",
            "help": "start from pretrained weights: a tag (imagenet, imagenet_v2; see "
            "`resnetkit models --pretrained`) or a .safetensors/.pth file",
        },
    ),
    (
        "--backbone-lr-scale",
        {"type": float, "help": "backbone learning rate = lr x this (the classifier keeps lr)"},
    ),
    ("--out-dir", {"help": "parent folder of runs (default runs/)"}),
    ("--name", {"help": "run folder name (default MODEL-DATA-TIMESTAMP)"}),
    ("--checkpoint-every-steps", {"type": int}),
    ("--keep-checkpoints", {"type": int}),
    ("--max-bad-steps", {"type": int, "help": "non-finite losses to skip before stopping"}),
)
TRAIN_SWITCHES = (
    "download",
    "flip",
    "channels_last",
    "compile",
    "tta_flip",
    "nesterov",
    "zero_init_residual",
    "tensorboard",
    "freeze_backbone",
)


def cmd_models(args: argparse.Namespace) -> int:
    if args.pretrained:
        return print_pretrained(args.pattern)
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


def print_pretrained(pattern: str) -> int:
    from .pretrained import get_pretrained, list_pretrained

    rows = [get_pretrained(model, tag) for model, tag in list_pretrained(pattern)]
    if not rows:
        raise PretrainedError(f"no pretrained weights for a model matching {pattern!r}")
    name_width = max(len(w.model) for w in rows)
    tag_width = max(len(w.tag) for w in rows)
    print(
        f"{'name':<{name_width}}  {'tag':<{tag_width}}  {'top-1':>6}  {'top-5':>6}  "
        f"{'params':>12}  {'input':>7}  license       source"
    )
    for w in rows:
        top1 = f"{w.top1:.3f}" if w.top1 is not None else "-"
        top5 = f"{w.top5:.3f}" if w.top5 is not None else "-"
        params = f"{w.num_params:,}" if w.num_params is not None else "-"
        size = f"{w.input_size}/{w.resize_size}"
        print(
            f"{w.model:<{name_width}}  {w.tag:<{tag_width}}  {top1:>6}  {top5:>6}  "
            f"{params:>12}  {size:>7}  {w.license:<12}  {w.source}"
        )
    print("top-1/top-5: ImageNet-1K validation accuracy (%) as published; input: crop/resize")
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


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config file (if any), then every flag the user set on top of it."""
    cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    changes = {}
    for flag, _ in TRAIN_FLAGS:
        key = flag.lstrip("-").replace("-", "_")
        value = getattr(args, key)
        if value is not None:
            changes[key] = value
    for key in TRAIN_SWITCHES:
        value = getattr(args, key)
        if value is not None:
            changes[key] = value
    return cfg.replace(**changes) if changes else cfg


def cmd_train(args: argparse.Namespace) -> int:
    from .progress import Progress, format_duration
    from .train import train

    progress = Progress(enabled=not args.quiet)
    if args.resume:
        result = train(TrainConfig(), resume=args.resume, progress=progress)
    else:
        cfg = train_config_from_args(args)
        result = train(cfg, overwrite=args.overwrite, progress=progress)
    if not result.history:
        print(f"nothing to do: the run in {result.run_dir} is already complete")
        return 0
    last = result.history[-1]
    print(
        f"test accuracy {last['test_acc']:.2%} (best {result.best_accuracy:.2%}) after "
        f"{int(last['epoch'])} epochs in {format_duration(result.wall_time)}; "
        f"run folder: {result.run_dir}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .checkpoint import load_model_checkpoint
    from .data import load_dataset, make_loader
    from .evaluate import evaluate
    from .train import configure_threads

    configure_threads(None)
    loaded = load_model_checkpoint(args.checkpoint)
    spec = loaded.model.spec
    data = args.data or loaded.metadata.get("dataset")
    if not data:
        raise DataError("the checkpoint does not name its dataset; pass --data")
    dataset = load_dataset(
        data,
        args.split,
        data_dir=args.data_dir,
        download=args.download,
        image_size=loaded.image_size,
        in_chans=spec.in_chans,
        val_fraction=args.val_fraction,
    )
    if len(dataset.info.class_names) != len(loaded.class_names):
        raise DataError(
            f"{data} has {len(dataset.info.class_names)} classes but the checkpoint was "
            f"trained on {len(loaded.class_names)}"
        )
    # The model expects the normalisation it was trained with, whatever the data's own is.
    dataset.info = dataclasses.replace(dataset.info, mean=loaded.mean, std=loaded.std)
    loader = make_loader(dataset, args.batch_size, shuffle=False, num_workers=args.num_workers)
    result = evaluate(loaded.model, loader, len(loaded.class_names), tta_flip=args.tta_flip)
    print(f"{data} {args.split}: {result.count} images")
    print(f"top-1 {result.top1:.2%}  top-5 {result.top5:.2%}  loss {result.loss:.4f}")
    width = max(len(n) for n in loaded.class_names)
    print("\nper-class accuracy:")
    for name, acc in zip(loaded.class_names, result.per_class_accuracy, strict=True):
        print(f"  {name:<{width}}  {acc:7.2%}")
    print("\nconfusion matrix (rows: true, columns: predicted):")
    cells = result.confusion.tolist()
    cell = max(4, len(str(max(max(r) for r in cells))))
    for name, row in zip(loaded.class_names, cells, strict=True):
        print(f"  {name:<{width}} " + " ".join(f"{v:>{cell}}" for v in row))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import load_predictor, predict_images

    loaded = load_predictor(args.checkpoint, args.backend)
    missing = [p for p in args.images if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"image not found: {missing[0]}")
    for prediction in predict_images(loaded, args.images, top_k=args.top_k):
        print(prediction.path)
        for name, prob in prediction.top:
            print(f"  {prob:7.2%}  {name}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint

    report = export_checkpoint(
        args.checkpoint,
        args.format,
        args.output,
        fold_bn=args.fold_bn,
        dynamic_batch=args.dynamic_batch,
        tolerance=args.tolerance,
    )
    print(report.path)
    print(
        f"max abs logit diff vs PyTorch: {report.max_abs_diff:.3g} "
        f"(tolerance {report.tolerance:g}, input {list(report.input_shape)}"
        f"{', BN folded' if report.folded else ''}"
        f"{', dynamic batch' if report.dynamic_batch else ''})"
    )
    return 0


def _add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model; flags override --config",
        description="Train a ResNet. Every flag overrides the value from --config.",
    )
    p.add_argument("--config", help="YAML recipe, e.g. configs/fashion_mnist_fast.yaml")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    for flag, options in TRAIN_FLAGS:
        p.add_argument(flag, default=None, **options)
    for key in TRAIN_SWITCHES:
        flag = key.replace("_", "-")
        p.add_argument(f"--{flag}", dest=key, action=argparse.BooleanOptionalAction, default=None)
    p.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnetkit", description="Build, train, inspect and export residual networks."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list registered models with params and MACs")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'resnet*'")
    p.add_argument("--pretrained", action="store_true", help="list pretrained weights instead")
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

    _add_train_parser(sub)

    p = sub.add_parser("eval", help="evaluate a run folder or checkpoint")
    p.add_argument("checkpoint", help="run folder (uses its best checkpoint) or .safetensors")
    p.add_argument("--data", help="dataset (default: the one it was trained on)")
    p.add_argument("--data-dir")
    p.add_argument("--download", action="store_true")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--val-fraction", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--tta-flip", action="store_true", help="average with the mirrored image")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="top-k classes for image files")
    p.add_argument("checkpoint", help="run folder, .safetensors checkpoint or exported .onnx file")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="default: onnxruntime for an .onnx file, torch otherwise",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX or TorchScript and check it against PyTorch",
        description="Export a checkpoint; fails (writing nothing) if the exported model's "
        "logits differ from PyTorch's by more than --tolerance.",
    )
    p.add_argument("checkpoint", help="run folder (uses its best checkpoint) or .safetensors")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write")
    p.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into the convolutions")
    p.add_argument(
        "--dynamic-batch", action="store_true", help="ONNX: any batch size (default: fixed 4)"
    )
    p.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest allowed abs logit difference"
    )
    p.set_defaults(func=cmd_export)
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
