"""resnetkit's benchmark suite: training MFU, input pipeline, inference paths, time to accuracy.

    python benchmarks/run.py                      # everything (about 15 minutes on 2 cores)
    python benchmarks/run.py --only training      # one section: training|pipeline|inference|tta
    python benchmarks/run.py --peak-gflops 166.4  # override the derived fp32 peak

Every figure is the median of several repetitions after warm-up, with min and max. Results go
to benchmarks/results/<machine>.json and .md. Ratios are measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hardware import Machine, detect_machine, matmul_gflops

import resnetkit as rk
from resnetkit.runtime import doctor_report, format_doctor

RESULTS = Path(__file__).resolve().parent / "results"

# (model, input side, batch, compare against the torchvision-style plain model) as #16 asks
TRAIN_CASES = [
    ("resnet20", 32, 256, False),
    ("resnet50", 128, 16, True),
]


def timed(fn: Callable[[], object], warmup: int, repeats: int, sync: bool = False) -> dict:
    """Seconds per call: median, min, max over `repeats` after `warmup` calls."""
    return timed_round_robin([fn], warmup, repeats, sync)[0]


def rate(stats: dict, work: float) -> dict:
    """Turn seconds-per-call stats into work-per-second stats (min/max swap)."""
    return {
        "median": work / stats["median"],
        "min": work / stats["max"],
        "max": work / stats["min"],
        "n": stats["n"],
    }


def training_step(model, optimizer, x, y, precision: str) -> Callable[[], None]:
    def step() -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def training_flops(name: str, side: int, batch: int) -> int:
    """FLOPs of one training step (forward + backward), from PyTorch's FLOP counter."""
    model = rk.create_model(name, num_classes=10)
    x = torch.randn(batch, 3, side, side)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), torch.zeros(batch, dtype=torch.long)).backward()
    return counter.get_total_flops()


def training_variants(with_plain: bool) -> list[tuple[str, str, str]]:
    """(implementation, layout, precision) rows for one case; the baseline comes first. bf16 is
    measured on every machine: where it has no native bf16 the row shows how slow it is."""
    plain = [("plain", "nchw", "fp32")] if with_plain else []
    return [
        *plain,
        ("resnetkit", "nchw", "fp32"),
        ("resnetkit", "channels_last", "fp32"),
        ("resnetkit", "channels_last", "bf16"),
    ]


def build_for_training(implementation: str, name: str, layout: str, device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if implementation == "plain":
        from plain_resnet import PlainResNet50

        model = PlainResNet50(num_classes=10)
    else:
        model = rk.create_model(name, num_classes=10)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if layout == "channels_last" else model


def bench_training(
    machine: Machine, peak: float, roof_gflops: float, device: str, quick: bool, auto: str
) -> list[dict]:
    """Every variant of a case is timed in turns (round-robin), so a slow spell of the machine
    hits them all alike and the ratios between them stay fair."""
    rows = []
    for name, side, batch, with_plain in TRAIN_CASES:
        flops = training_flops(name, side, batch)
        variants = training_variants(with_plain)
        steps = []
        for implementation, layout, precision in variants:
            model = build_for_training(implementation, name, layout, device)
            x = torch.randn(batch, 3, side, side, device=device)
            if layout == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 10, (batch,), device=device)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            steps.append(training_step(model, opt, x, y, precision))
        repeats = 2 if quick else (4 if side >= 128 else 8)
        timings = timed_round_robin(steps, warmup=2, repeats=repeats, sync=device == "cuda")
        baseline = timings[0]["median"]
        for (implementation, layout, precision), stats in zip(variants, timings, strict=True):
            achieved = flops / stats["median"] / 1e9
            row = {
                "model": name,
                "implementation": implementation,
                "input": side,
                "batch": batch,
                "layout": layout,
                "precision": precision,
                "auto_precision": precision == auto,
                "step_s": stats,
                "images_per_s": rate(stats, batch),
                "gflop_per_step": flops / 1e9,
                "achieved_gflops": achieved,
                "mfu_vs_fp32_peak": achieved / peak,
                "fraction_of_matmul_roof": achieved / roof_gflops,
                "speedup_vs_first": baseline / stats["median"],
            }
            rows.append(row)
            print(
                f"  train {name:9s} {implementation:9s} {layout:13s} {precision}: "
                f"{row['images_per_s']['median']:8.1f} img/s  {achieved:6.1f} GFLOP/s  "
                f"{row['fraction_of_matmul_roof']:.0%} of roof  x{row['speedup_vs_first']:.2f}",
                flush=True,
            )
    return rows


def timed_round_robin(
    fns: list[Callable[[], None]], warmup: int, repeats: int, sync: bool = False
) -> list[dict]:
    """Like `timed`, for several functions measured in turns: f1 f2 f3 f1 f2 f3 ..."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            if sync:
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if sync:
                torch.cuda.synchronize()
            spent.append(time.perf_counter() - start)
    return [
        {"median": statistics.median(t), "min": min(t), "max": max(t), "n": repeats} for t in times
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", action="append", choices=["training", "pipeline", "inference", "tta"]
    )
    parser.add_argument("--peak-gflops", type=float, help="override the derived fp32 peak")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--name", help="machine name for the results file")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("--tta-run", help="run folder whose metrics give time to accuracy")
    parser.add_argument(
        "--tta-train",
        action="store_true",
        help="train configs/fashion_mnist_fast.yaml now for time to accuracy",
    )
    args = parser.parse_args()
    sections = args.only or ["training", "pipeline", "inference", "tta"]

    torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
    machine = detect_machine(args.name)
    if args.device == "cuda":
        machine = gpu_machine(machine, args.name)
    peak = args.peak_gflops or machine.peak_gflops
    doctor = doctor_report(torch.device(args.device))
    print(format_doctor(doctor))  # the same block as `resnetkit doctor`
    print(f"machine: {machine.cpu}")
    print(f"fp32 peak: {machine.derivation}")
    if args.peak_gflops:
        print(f"fp32 peak overridden: {peak:.1f} GFLOP/s")
    roof = matmul_gflops(device=args.device)
    print(
        f"practical roof: 4096x4096 fp32 matmul {roof['median']:.1f} GFLOP/s "
        f"({roof['median'] / peak:.0%} of peak)"
    )
    if roof["median"] > peak:
        print(
            "  note: the matmul beats the derived peak, so the clock the OS reports is below the "
            "real (turbo) clock; MFU is also given against the matmul roof"
        )

    RESULTS.mkdir(exist_ok=True)
    json_path = RESULTS / f"{machine.name}.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    results.update(
        {
            "machine": machine.as_dict(),
            "peak_gflops": peak,
            "matmul_roof_gflops": roof,
            "doctor": doctor,
            "date": time.strftime("%Y-%m-%d"),
        }
    )
    from report import markdown_report
    from sections import bench_inference, bench_pipeline, time_to_accuracy

    md_path = RESULTS / f"{machine.name}.md"

    def save() -> None:
        # After every section, so an interrupted run keeps what it measured.
        results["targets"] = evaluate_targets(results)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        md_path.write_text(markdown_report(results))

    if "training" in sections:
        print("training throughput (one SGD step, forward + backward):")
        auto = doctor["auto_precision"]["precision"]
        results["training"] = bench_training(
            machine, peak, roof["median"], args.device, args.quick, auto
        )
        save()
    if "pipeline" in sections:
        print("input pipeline (Fashion-MNIST epoch, same model and batch):")
        results["pipeline"] = bench_pipeline(args.device, args.quick)
        save()
    if "inference" in sections:
        print("inference:")
        results["inference"] = bench_inference(args.device, args.quick)
        save()
    if "tta" in sections and (args.tta_run or args.tta_train):
        print("time to 94% on Fashion-MNIST:")
        results["time_to_accuracy"] = time_to_accuracy(args.tta_run, args.tta_train)
    save()
    print(f"wrote {json_path} and {md_path}")


def gpu_machine(cpu: Machine, name: str | None) -> Machine:
    """On CUDA the peak is the GPU's; it is not derivable from /proc, so it comes from a table."""
    from dataclasses import replace

    props = torch.cuda.get_device_properties(0)
    # dense fp32 (non-tensor-core) peaks, GFLOP/s, from the vendors' datasheets
    known = {"H100": 67_000.0, "H200": 67_000.0, "A100": 19_500.0}
    label = next((k for k in known if k in props.name), None)
    peak = known.get(label, 0.0)
    per_cycle = 0
    return replace(
        cpu,
        name=name or f"gpu-{props.name.lower().replace(' ', '-')}",
        cpu=props.name,
        cores=props.multi_processor_count,
        mhz=peak * 1e3 / max(props.multi_processor_count, 1) if peak else 0.0,
        flop_per_cycle=1 if peak else per_cycle,
        derivation=f"{props.name}: fp32 peak {peak:.0f} GFLOP/s from the datasheet "
        "(use --peak-gflops to override)",
    )


def evaluate_targets(results: dict) -> list[dict]:
    """The issue's targets, each with the measured value and the margin (met or missed by)."""
    targets = []

    def add(what: str, value: float | None, goal: float, higher_is_better: bool = True) -> None:
        if value is None:
            return
        met = value >= goal if higher_is_better else value <= goal
        targets.append(
            {"target": what, "goal": goal, "measured": value, "met": met, "margin": value - goal}
        )

    auto = results.get("doctor", {}).get("auto_precision", {}).get("precision", "fp32")
    train = results.get("training", [])
    for precision in sorted({"fp32", auto}):
        label = f"{precision}{' = auto' if precision == auto else ''}"
        fastest = _fastest(train, "resnet20", precision)
        add(
            f"resnet20 training, fraction of the matmul roof ({label})",
            fastest and fastest["fraction_of_matmul_roof"],
            0.75,
        )
        plain = _fastest(train, "resnet50", "fp32", implementation="plain")
        fastest = _fastest(train, "resnet50", precision)
        add(
            f"resnet50 b16 128px training vs plain eager NCHW fp32 ({label})",
            fastest and plain and plain["step_s"]["median"] / fastest["step_s"]["median"],
            1.4,
        )
    pipe = results.get("pipeline")
    if pipe:
        add("batched pipeline / per-image DataLoader", pipe["ratio"], 1.5)
        add(
            "augmentation share of a training step",
            pipe["augment_share_of_step"],
            0.05,
            higher_is_better=False,
        )
    inf = results.get("inference", {})
    for what, key, goal in (
        ("resnet50 batch-1 plain PyTorch path vs eager NCHW", "resnet50_batch1_torch_speedup", 1.5),
        ("resnet50 batch-1 ONNX Runtime vs eager NCHW", "resnet50_batch1_ort_speedup", 2.5),
    ):
        add(what, inf.get(key), goal)
    tta = results.get("time_to_accuracy")
    if tta and tta.get("seconds") is not None:
        add("Fashion-MNIST 94% wall time (s)", tta["seconds"], 600, higher_is_better=False)
    return targets


def _fastest(rows: list[dict], model: str, precision: str, implementation: str = "resnetkit"):
    """The quickest row of one model, precision and implementation (any layout), or None."""
    found = [
        r
        for r in rows
        if r["model"] == model
        and r["precision"] == precision
        and r.get("implementation", "resnetkit") == implementation
    ]
    return min(found, key=lambda r: r["step_s"]["median"], default=None)


if __name__ == "__main__":
    main()
