"""The `resnetkit` command: argument parsing and printing only; each command calls the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..core.options import OptionField
from ..data import DataError
from ..deploy.export import FORMATS, ExportError
from ..deploy.predict import BACKENDS, PredictError
from ..explain import ExplainError
from ..models import registry
from ..models.pretrained_cfg import PretrainedCfgError
from ..models.resnet import ResNet
from ..models.spec import SpecError
from ..models.summary import count_macs, count_params, format_si, summary
from ..training.config import (
    MAX_IMAGE_SIZE,
    ConfigError,
    TrainConfig,
    check_run_name,
    config_options,
)
from ..training.train import NonFiniteLossError, RunError, TrainResult
from ..weights.catalogue import PretrainedError
from ..weights.checkpoint import CheckpointError, LoadedModel
from ..weights.factory import create_model
from ..weights.io import WeightsError

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
    PretrainedCfgError,
    ExplainError,
    PredictError,
    FileNotFoundError,
    FileExistsError,
)


def _parse_bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1", "on"):
        return True
    if text.lower() in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


SECTION_TITLES = {
    None: "model and data",
    "dataset": "dataset: where the data is, the validation split, reading",
    "augment": "augment: batch augmentation",
    "optim": "optim: optimizer, schedule, loss, weight averaging",
    "runtime": "runtime: device, precision, threads",
    "eval": "eval: evaluation and test-time augmentation",
    "run": "run: folder, seed, checkpoints, logging",
}


def _flag_options(spec: OptionField) -> dict[str, object]:
    """argparse keywords for one config field: its type, choices and help with the default."""
    kind, meta = spec.type, spec.option
    help_text = f"{meta.help} (default: {spec.default_text()})".replace("%", "%%")
    options: dict[str, object] = {"dest": spec.name, "default": None, "help": help_text}
    if kind.base is bool and not kind.optional:
        options["action"] = argparse.BooleanOptionalAction  # --flip / --no-flip
    elif kind.base is bool:
        options |= {"type": _parse_bool, "metavar": meta.metavar or "BOOL"}  # None = auto
    elif kind.base is tuple:
        options |= {"type": float, "nargs": "+"}
    elif meta.choices:
        options["choices"] = list(meta.choices)
    else:
        options["type"] = kind.base
    if "action" not in options and "choices" not in options:
        short = {int: "N", float: "X", tuple: "X"}.get(kind.base, spec.name.upper())
        options.setdefault("metavar", meta.metavar or short)
    return options


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per training config field (`lr` -> --lr, `sync_bn` -> --sync-bn/--no-sync-bn),
    generated from the field definitions and grouped by section."""
    groups = {}
    for section, spec in config_options():
        if section not in groups:
            groups[section] = parser.add_argument_group(SECTION_TITLES[section])
        groups[section].add_argument(spec.flag, **_flag_options(spec))


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
    from ..weights.catalogue import get_pretrained, list_bundled, list_pretrained

    rows = [get_pretrained(model, tag) for model, tag in list_pretrained(pattern)]
    shipped = list_bundled(pattern)
    if not rows and not shipped:
        raise PretrainedError(f"no pretrained weights for a model matching {pattern!r}")
    if rows:
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
    for w in shipped:
        meta = w.metadata()
        acc = float(meta.get("test_acc", "nan"))
        print(f"bundled (offline): {w.name}  test accuracy {acc:.2%}  {w.description}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    overrides = {}
    if args.num_classes is not None:
        overrides["num_classes"] = args.num_classes
    if args.input_size is not None:
        overrides["in_chans"] = args.input_size[0]
    if args.depth < 1:
        raise SpecError(
            f"invalid --depth {args.depth}: expected 1 (stages), 2 (blocks), 3 (layers) or more"
        )
    if args.input_size is not None and not all(1 <= n <= MAX_IMAGE_SIZE for n in args.input_size):
        raise SpecError(
            f"invalid --input-size {' '.join(map(str, args.input_size))}: each of C, H, W must "
            f"be from 1 to {MAX_IMAGE_SIZE}"
        )
    model = create_model(args.model, **overrides)
    try:
        table = summary(model, input_size=args.input_size, depth=args.depth)
    except ValueError as exc:  # an input the network cannot take, e.g. smaller than it accepts
        raise SpecError(str(exc)) from None
    print(table)
    return 0


def train_flag_changes(args: argparse.Namespace) -> dict[str, object]:
    """The TrainConfig fields of every flag the user set."""
    changes = {}
    for _, spec in config_options():
        value = getattr(args, spec.name)
        if value is not None:
            changes[spec.name] = value
    if args.name is not None:
        check_run_name(args.name, "invalid --name")
    return changes


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config file (if any), then every flag the user set on top of it."""
    cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    changes = train_flag_changes(args)
    return cfg.replace(**changes) if changes else cfg


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..training.runtime import doctor_report, format_doctor

    report = doctor_report(measure=not args.no_measure)
    if args.json:
        import json

        print(json.dumps(report, indent=1))
    else:
        print(format_doctor(report))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.progress import Progress, format_duration
    from ..training.train import train

    progress = Progress(enabled=not args.quiet)
    if args.resume:
        if args.config or args.overwrite:
            raise RunError(
                "--resume continues a run with its own config.yaml; it cannot be combined with "
                + ("--config" if args.config else "--overwrite")
            )
        changes = train_flag_changes(args)
        result = train(TrainConfig(), resume=args.resume, progress=progress, resume_changes=changes)
    else:
        cfg = train_config_from_args(args)
        result = train(cfg, overwrite=args.overwrite, progress=progress)
    if not result.is_main:
        return 0  # rank 0 reports for the whole torchrun launch
    if not result.history:
        print(f"nothing to do: the run in {result.run_dir} is already complete")
        return 0
    print(
        f"{train_summary(result, format_duration(result.wall_time))}; run folder: {result.run_dir}"
    )
    return 0


def train_summary(result: TrainResult, duration: str) -> str:
    """The final accuracy, and which split chose the best checkpoint: 'selected on test' where
    no validation split was held out."""
    last, best = result.history[-1], result.best_row
    shown = "test" if last.get("test_acc") is not None else "val"
    head = f"{shown} accuracy {last[f'{shown}_acc']:.2%}"
    if result.raw_final is not None:  # with a weight average: the trained weights' own
        head += f" (EMA; raw weights {result.raw_final.top1:.2%})"
    when = f"after {int(last['epoch'])} epochs in {duration}"
    if best is None:
        return f"{head} {when}"
    if result.selected_on == "test":
        return f"{head} (best {best['test_acc']:.2%}, selected on test) {when}"
    numbers = ", ".join(
        f"{split} {best[f'{split}_acc']:.2%}"
        for split in ("val", "test")
        if best.get(f"{split}_acc") is not None
    )
    missing = " (the data has no test split)" if shown == "val" else ""
    return (
        f"{head} {when}{missing}; best checkpoint: epoch {int(best['epoch'])} ({numbers}), "
        f"chosen on val"
    )


def cmd_eval(args: argparse.Namespace) -> int:
    from ..training.evaluate import evaluate_checkpoint
    from ..training.train import configure_threads

    # Checked before the evaluation, which can take minutes, not after it.
    refuse_existing(args.html, args.overwrite)
    refuse_existing(args.confusion, args.overwrite)
    configure_threads(None)
    report = evaluate_checkpoint(
        checkpoint_or_pretrained(args.checkpoint, args.pretrained),
        data=args.data,
        split=args.split,
        data_dir=args.data_dir,
        download=args.download,
        val_fraction=args.val_fraction,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        tta_flip=args.tta_flip,
        tta_translate=args.tta_translate,
        keep_mistakes=12 if args.html else 0,
    )
    result, names = report.result, report.class_names
    tta = ", flip TTA" if report.tta_flip else ""
    tta += f", translate TTA ±{report.tta_translate}px" if report.tta_translate else ""
    print(f"{report.dataset} {report.split}: {result.count} images{tta}")
    print(f"top-1 {result.top1:.2%}  top-5 {result.top5:.2%}  loss {result.loss:.4f}")
    width = max(len(n) for n in names)
    print("\nper-class accuracy:")
    for name, acc in zip(names, result.per_class_accuracy, strict=True):
        print(f"  {name:<{width}}  {acc:7.2%}")
    print("\nconfusion matrix (rows: true, columns: predicted):")
    cells = result.confusion.tolist()
    cell = max(4, len(str(max(max(r) for r in cells))))
    for name, row in zip(names, cells, strict=True):
        print(f"  {name:<{width}} " + " ".join(f"{v:>{cell}}" for v in row))
    if args.confusion:
        print(f"\nconfusion matrix: {write_confusion_png(args, report)}")
    if args.html:
        print(f"\nreport page: {write_eval_page(args, report)}")
    return 0


def write_confusion_png(args: argparse.Namespace, report) -> str:
    from ..core.fileio import atomic_path
    from ..explain.plots import plot_confusion

    with atomic_path(args.confusion) as tmp, open(tmp, "wb") as handle:
        title = f"confusion matrix ({report.dataset}, {report.split})"
        plot_confusion(report.result.confusion, report.class_names, handle, title=title)
    return str(args.confusion)


def write_eval_page(args: argparse.Namespace, report) -> str:
    from ..explain.run_report import ReportPage, explain_mistakes, write_page

    result = report.result
    tta = "flip" if report.tta_flip else "none"
    tta += f" + translate ±{report.tta_translate}px" if report.tta_translate else ""
    weights = args.checkpoint or args.pretrained
    page = ReportPage(
        title=f"{weights} on {report.dataset} ({report.split})",
        summary=[
            ("checkpoint" if args.checkpoint else "weights", str(weights)),
            ("data", f"{report.dataset}, split {report.split}, {result.count} images"),
            ("top-1, top-5", f"{result.top1:.2%}, {result.top5:.2%}"),
            ("loss", f"{result.loss:.4f}"),
            ("test-time augmentation", tta),
        ],
        class_names=report.class_names,
        confusion=result.confusion,
        per_class_accuracy=tuple(result.per_class_accuracy),
        mistakes=tuple(explain_mistakes(report.model, result.mistakes, report.mean, report.std)),
    )
    return str(write_page(args.html, page))


def checkpoint_and_images(
    args: argparse.Namespace, kinds: str
) -> tuple[str | LoadedModel, list[str]]:
    """`CHECKPOINT IMAGE...`, or `--pretrained NAME IMAGE...` (then the named weights, loaded,
    stand for the checkpoint); every image must exist, which is checked before any download."""
    if not args.pretrained and len(args.inputs) < 2:
        raise FileNotFoundError(
            f"give a checkpoint ({kinds}) and at least one image, or --pretrained NAME and images"
        )
    images = list(args.inputs) if args.pretrained else list(args.inputs[1:])
    missing = [p for p in images if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"image not found: {missing[0]}")
    return checkpoint_or_pretrained(
        None if args.pretrained else args.inputs[0], args.pretrained
    ), images


def checkpoint_or_pretrained(checkpoint: str | None, pretrained: str | None) -> str | LoadedModel:
    """The checkpoint argument, or with --pretrained the named weights, loaded: any `model.tag`
    of `resnetkit models --pretrained` (catalogue weights are downloaded once; offline, one
    error names the URL and the cache path)."""
    from ..deploy.predict import load_pretrained_model

    if checkpoint and pretrained:
        raise CheckpointError("give a checkpoint or --pretrained NAME, not both")
    if pretrained:
        return load_pretrained_model(pretrained)
    if not checkpoint:
        raise CheckpointError(
            "give a checkpoint (a run folder or .safetensors) or --pretrained NAME"
        )
    return checkpoint


def cmd_predict(args: argparse.Namespace) -> int:
    from ..core.fileio import atomic_write_text
    from ..deploy.predict import format_predictions, load_predictor, predict_images

    output_format = predict_output_format(args)
    refuse_existing(args.output, args.overwrite)
    checkpoint, images = checkpoint_and_images(args, "run folder, .safetensors or .onnx")
    loaded = load_predictor(checkpoint, args.backend)
    predictions = predict_images(loaded, images, top_k=args.top_k)
    if output_format is None:
        for prediction in predictions:
            print(prediction.path)
            for name, prob in prediction.top:
                print(f"  {prob:7.2%}  {name}")
        return 0
    text = format_predictions(predictions, output_format)
    if args.output:
        print(f"wrote {atomic_write_text(args.output, text)}")
    else:
        sys.stdout.write(text)
    return 0


def predict_output_format(args: argparse.Namespace) -> str | None:
    """json or csv (from the flag, else from -o's suffix); None for the readable listing."""
    chosen = "json" if args.json else "csv" if args.csv else None
    if chosen is None and args.output:
        chosen = {".json": "json", ".csv": "csv"}.get(os.path.splitext(args.output)[1].lower())
        if chosen is None:
            raise PredictError(f"-o {args.output}: say --json or --csv (or name a .json/.csv file)")
    return chosen


def refuse_existing(path: str | None, overwrite: bool) -> None:
    """A user's file is never replaced without --overwrite."""
    if path and os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")


def cmd_explain(args: argparse.Namespace) -> int:
    from ..explain import explain_images
    from ..weights.checkpoint import as_loaded

    checkpoint, images = checkpoint_and_images(args, "run folder or .safetensors")
    loaded = as_loaded(checkpoint)
    explained = explain_images(loaded, images, args.output, args.target, args.top_k, args.overwrite)
    for item in explained:
        best, prob = item.top[0]
        print(f"{item.source}: {best} {prob:.2%} -> {item.picture}")
    print(f"index page: {os.path.join(args.output, 'index.html')}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..deploy.export import check_output, export_checkpoint

    if args.pretrained:  # checked before the weights are downloaded, not after
        check_output(Path(args.output), None, args.overwrite)
    report = export_checkpoint(
        checkpoint_or_pretrained(args.checkpoint, args.pretrained),
        args.format,
        args.output,
        fold_bn=args.fold_bn,
        dynamic_batch=args.dynamic_batch,
        tolerance=args.tolerance,
        overwrite=args.overwrite,
    )
    print(report.path)
    print(
        f"max abs logit diff vs PyTorch: {report.max_abs_diff:.3g} "
        f"(tolerance {report.tolerance:g}, input {list(report.input_shape)}"
        f"{', BN folded' if report.folded else ''}"
        f"{', dynamic batch' if report.dynamic_batch else ''})"
    )
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from .. import experiments
    from ..training.progress import Progress, format_duration

    common = dict(
        data=args.data,
        epochs=args.epochs,
        subset=args.subset,
        out_dir=args.out_dir,
        name=args.name,
        quick=args.quick,
        overwrite=args.overwrite,
        data_dir=args.data_dir,
        progress=Progress(enabled=not args.quiet),
    )
    if args.experiment == "degradation":
        result = experiments.run_degradation(depths=args.depths, **common)
    else:
        result = experiments.run_compare(
            pairs=args.pairs, depth=args.depth, shortcut_depths=args.shortcut_depths, **common
        )
    for run in result.runs:
        print(
            f"{run.label}: train error {run.train_error:.2%}, test error {run.test_error:.2%}, "
            f"{format_duration(run.wall_time)} ({run.status})"
        )
    for line in result.verdict:
        print(line)
    print(f"report: {result.report}")
    return 0


def cmd_inspect_features(args: argparse.Namespace) -> int:
    from ..explain import explain_features
    from ..weights.checkpoint import as_loaded

    checkpoint, images = checkpoint_and_images(args, "run folder or .safetensors")
    if len(images) != 1:
        raise FileNotFoundError("give a checkpoint (or --pretrained NAME) and exactly one image")
    output = args.output or f"{os.path.splitext(os.path.basename(images[0]))[0]}-features.png"
    loaded = as_loaded(checkpoint)
    path = explain_features(loaded, images[0], output, args.channels, args.overwrite)
    print(f"wrote {path}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..experiments import inspect_gradients

    result = inspect_gradients(
        args.models,
        data=args.data,
        steps=args.steps,
        batch_size=args.batch_size,
        out=args.out,
        quick=args.quick,
        lr=args.lr,
        momentum=args.momentum,
        seed=args.seed,
        data_dir=args.data_dir,
        overwrite=args.overwrite,
    )
    for report in result.reports:
        ratio_init, ratio_after = report.first_to_last_ratio
        print(
            f"{report.model}: loss {report.init.loss:.4f} -> {report.trained.loss:.4f}; "
            f"first/last layer gradient norm {ratio_init:.3g} at init, {ratio_after:.3g} after "
            f"{report.steps} steps"
        )
    print(f"report: {result.report}")
    return 0


def _plain_name(text: str) -> str:
    try:
        return check_run_name(text, "invalid name")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_experiment_parser(sub) -> None:
    p = sub.add_parser("experiment", help="reproduce the papers' experiments (resumable)")
    kinds = p.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    for kind, text in (
        ("degradation", "plain vs residual nets at two depths (He et al. 2015, Fig. 6)"),
        ("compare", "v1 vs v2 units and shortcut A vs B at equal budget"),
    ):
        q = kinds.add_parser(kind, help=text, description=text + ". Re-running resumes.")
        q.add_argument("--data", help="dataset (default fashion-mnist; synthetic with --quick)")
        q.add_argument("--data-dir", help="where the dataset files are")
        q.add_argument("--epochs", type=int, help="epochs per run (default 10; 2 with --quick)")
        q.add_argument("--subset", type=int, help="train on the first N images (default 30000)")
        q.add_argument("--out-dir", default="runs/experiments", help="parent of the folder")
        q.add_argument(
            "--name", type=_plain_name, help=f"experiment folder name (default {kind}-DATA)"
        )
        q.add_argument("--quick", action="store_true", help="tiny synthetic smoke test")
        q.add_argument("--overwrite", action="store_true", help="retrain every run")
        q.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        if kind == "degradation":
            q.add_argument(
                "--depths", type=int, nargs="+", help="6n+2 depths (default 20 56; 8 14 quick)"
            )
        else:
            q.add_argument("--pairs", choices=["v1v2", "shortcuts", "all"], default="all")
            q.add_argument("--depth", type=int, help="v1v2 depth (default 56; 14 with --quick)")
            q.add_argument(
                "--shortcut-depths",
                type=int,
                nargs="+",
                help="depths of the A vs B pairs (default 20 56; 8 14 with --quick)",
            )
        q.set_defaults(func=cmd_experiment)


def _add_inspect_parser(sub) -> None:
    p = sub.add_parser("inspect", help="look inside models: gradient flow, feature maps")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    text = "per-layer gradient norms and unit activations at init and after K SGD steps"
    q = what.add_parser("gradients", help=text, description=text + ".")
    q.add_argument("models", nargs="+", metavar="MODEL", help="registered names or spec files")
    q.add_argument("--data", help="fashion-mnist (default), synthetic, ...")
    q.add_argument("--data-dir", help="where the dataset files are")
    q.add_argument("--steps", type=int, help="SGD steps (default 100; 3 with --quick)")
    q.add_argument("--batch-size", type=int, help="default 128; 16 with --quick")
    q.add_argument("--lr", type=float, default=0.1)
    q.add_argument("--momentum", type=float, default=0.0)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", help="output folder (default runs/inspect/gradients-MODELS)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing report")
    q.add_argument("--quick", action="store_true", help="synthetic data, tiny batches, 3 steps")
    q.set_defaults(func=cmd_inspect)

    text = "each stage's strongest channels for one image, from edges to parts"
    q = what.add_parser("features", help=text, description=text + ".")
    q.add_argument(
        "inputs", nargs="+", metavar="CHECKPOINT IMAGE", help="checkpoint then one image file"
    )
    q.add_argument("--pretrained", metavar="NAME", help=PRETRAINED_HELP)
    q.add_argument("-o", "--output", help="PNG to write (default IMAGE-features.png)")
    q.add_argument("--channels", type=int, default=8, help="channels per stage (default 8)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    q.set_defaults(func=cmd_inspect_features)


def _add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model; flags override --config",
        description="Train a ResNet. Every flag overrides the value from --config; each is "
        "also a config key (--weight-decay is weight_decay, flat or in its section: optim: "
        "{weight_decay: 1e-4}). By default a stratified share of the training set "
        "(--val-fraction) chooses the best checkpoint and the test split is only reported.",
    )
    p.add_argument("--config", help="YAML recipe, e.g. configs/fashion_mnist_fast.yaml")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)


PRETRAINED_HELP = (
    "named weights instead of a checkpoint: model.tag as `resnetkit models --pretrained` lists "
    "them, e.g. resnet50.imagenet_v2 (downloaded once, then cached) or resnet20.fashion_mnist "
    "(ships with the package, works offline)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnetkit", description="Build, train, inspect and export residual networks."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_models_parsers,
        _add_train_parser,
        _add_doctor_parser,
        _add_eval_parser,
        _add_predict_parser,
        _add_export_parser,
        _add_explain_parser,
        _add_experiment_parser,
        _add_inspect_parser,
    ):
        add(sub)
    return parser


def _add_models_parsers(sub) -> None:
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


def _add_doctor_parser(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="what this machine is and which precision `auto` picks (paste it into bug reports)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--no-measure", action="store_true", help="skip the matmul roof and the precision probe"
    )
    p.set_defaults(func=cmd_doctor)


def _add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run folder, checkpoint or named weights")
    p.add_argument(
        "checkpoint", nargs="?", help="run folder (uses its best checkpoint) or .safetensors"
    )
    p.add_argument("--pretrained", metavar="NAME", help=PRETRAINED_HELP + "; needs --data")
    p.add_argument("--data", help="dataset (default: the one it was trained on)")
    p.add_argument("--data-dir")
    p.add_argument("--download", action="store_true")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument(
        "--val-fraction",
        type=float,
        help="share of train held out as --split val (default: the share and seed the run "
        "recorded, so val is exactly what it never trained on)",
    )
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument(
        "--tta-flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average with the mirrored image (default: as the training run evaluated)",
    )
    p.add_argument(
        "--html",
        metavar="FILE",
        help="also write a self-contained report page: confusion matrix, per-class accuracy, "
        "the most confident mistakes with Grad-CAM",
    )
    p.add_argument(
        "--confusion",
        metavar="FILE",
        help="also write the confusion matrix as a PNG image (rows: true, columns: predicted)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace existing --html/--confusion files"
    )
    p.add_argument(
        "--tta-translate",
        type=int,
        default=None,
        metavar="PIXELS",
        help="also average with copies shifted by PIXELS (default: as the training run did)",
    )
    p.set_defaults(func=cmd_eval)


def _add_predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="top-k classes for image files")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="CHECKPOINT IMAGE",
        help="a run folder, .safetensors checkpoint or exported .onnx file, then image files "
        "(PNG, JPEG, ...); with --pretrained, only image files",
    )
    p.add_argument("--pretrained", metavar="NAME", help=PRETRAINED_HELP)
    p.add_argument("--top-k", type=int, default=5, help="classes per image (default 5)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="default: onnxruntime for an .onnx file, torch otherwise",
    )
    output = p.add_mutually_exclusive_group()
    output.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list: per image its path, labels, probabilities, class indices",
    )
    output.add_argument(
        "--csv",
        action="store_true",
        help="print CSV: per image a row of path, then label, probability, index per rank",
    )
    p.add_argument(
        "-o", "--output", metavar="FILE", help="write the JSON/CSV to FILE instead of printing it"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o file")
    p.set_defaults(func=cmd_predict)


def _add_export_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX or TorchScript and check it against PyTorch",
        description="Export a checkpoint; fails (writing nothing) if the exported model's "
        "logits differ from PyTorch's by more than --tolerance.",
    )
    p.add_argument(
        "checkpoint", nargs="?", help="run folder (uses its best checkpoint) or .safetensors"
    )
    p.add_argument("--pretrained", metavar="NAME", help=PRETRAINED_HELP)
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write")
    p.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into the convolutions")
    p.add_argument(
        "--dynamic-batch", action="store_true", help="ONNX: any batch size (default: fixed 4)"
    )
    p.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest allowed abs logit difference"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_export)


def _add_explain_parser(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="Grad-CAM: where in each image the evidence for a class lies",
        description="Write a Grad-CAM overlay PNG per image (the image, the heat map, the "
        "top classes) and an index.html that embeds them.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="CHECKPOINT IMAGE",
        help="a run folder or .safetensors checkpoint, then image files; with --pretrained, "
        "only image files",
    )
    p.add_argument("--pretrained", metavar="NAME", help=PRETRAINED_HELP)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write into")
    p.add_argument(
        "--target",
        metavar="CLASS",
        help="explain this class (name or index) instead of the predicted one",
    )
    p.add_argument("--top-k", type=int, default=3, help="classes to list (default 3)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier explanation")
    p.set_defaults(func=cmd_explain)


OUT_OF_MEMORY = "out of memory: use a smaller --batch-size, --image-size or model"


def _one_line_error(command: str, message: str) -> int:
    """Print a user error as one line on stderr; exit status 2."""
    print(f"resnetkit {command}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


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
        return _one_line_error(args.command, str(exc))
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
    except OSError as exc:  # a user path that is read-only, full, a folder, ...
        where = f"{exc.filename}: " if exc.filename else ""
        return _one_line_error(args.command, f"{where}{exc.strerror or exc}")
    except MemoryError:
        return _one_line_error(args.command, OUT_OF_MEMORY)
    except RuntimeError as exc:
        if not any(text in str(exc) for text in ("not enough memory", "can't allocate memory")):
            raise
        return _one_line_error(args.command, OUT_OF_MEMORY)
    except KeyboardInterrupt:
        print(f"resnetkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
