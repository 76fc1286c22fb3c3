"""Benchmark sections: input pipeline, inference paths, time to accuracy."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import resnetkit as rk
from resnetkit.data import AugmentConfig, Normalize, augment_batch, load_dataset, make_loader

PIPE_MODEL, PIPE_BATCH, PIPE_PADDING = "resnet20", 128, 2


# -- input pipeline ------------------------------------------------------------------------------


class TutorialFashionMNIST(Dataset):
    """The tutorials' pipeline, re-created without torchvision: one PIL image per item, then
    RandomCrop(28, padding=2), RandomHorizontalFlip, ToTensor and Normalize per sample."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float):
        self.images = [Image.fromarray(img[0].numpy(), mode="L") for img in images]
        self.labels = labels.tolist()
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index]
        array = np.pad(np.asarray(image), PIPE_PADDING)  # RandomCrop's zero padding
        top, left = np.random.randint(0, 2 * PIPE_PADDING + 1, size=2)
        image = Image.fromarray(array[top : top + 28, left : left + 28])
        if np.random.rand() < 0.5:  # RandomHorizontalFlip
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]  # ToTensor
        return (tensor - self.mean) / self.std, self.labels[index]  # Normalize


def _train_epoch(model, optimizer, batches, channels_last: bool) -> tuple[float, int]:
    start, seen = time.perf_counter(), 0
    for x, y in batches:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += y.numel()
    return time.perf_counter() - start, seen


def _fresh_model():
    torch.manual_seed(0)
    model = rk.create_model(PIPE_MODEL, num_classes=10, in_chans=1)
    model = model.to(memory_format=torch.channels_last)
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)


def bench_pipeline(device: str, quick: bool) -> dict:
    """One Fashion-MNIST epoch with each pipeline, same model/batch/step (bf16 autocast)."""
    train = load_dataset("fashion-mnist", "train")
    if quick:
        train = train.subset(torch.arange(6400))
    mean, std = train.info.mean[0], train.info.std[0]
    augment = AugmentConfig(crop_padding=PIPE_PADDING, flip=True)

    model, opt = _fresh_model()
    batched = make_loader(
        train, PIPE_BATCH, device=device, augment=augment, channels_last=True, seed=0
    )
    batched_s, n = _train_epoch(model, opt, batched.iter_from(0), channels_last=False)
    print(
        f"  batched in-memory pipeline: {n / batched_s:8.1f} img/s ({batched_s:.1f} s)", flush=True
    )

    model, opt = _fresh_model()
    tutorial = DataLoader(
        TutorialFashionMNIST(train.images, train.labels, mean, std),
        batch_size=PIPE_BATCH,
        shuffle=True,
        num_workers=2,
        persistent_workers=False,
    )
    tutorial_s, n2 = _train_epoch(model, opt, tutorial, channels_last=True)
    print(
        f"  per-image DataLoader (2 workers): {n2 / tutorial_s:8.1f} img/s ({tutorial_s:.1f} s)",
        flush=True,
    )

    # Each pipeline alone, with no model: how fast it can deliver batches at all.
    start = time.perf_counter()
    for _ in batched.iter_from(1):
        pass
    batched_only = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in tutorial:
        pass
    tutorial_only = n2 / (time.perf_counter() - start)
    print(
        f"  pipelines alone: batched {batched_only:,.0f} img/s, per-image DataLoader "
        f"{tutorial_only:,.0f} img/s",
        flush=True,
    )

    # The augmentation + normalisation kernel alone, against one full training step.
    images = train.images[:PIPE_BATCH].to(device)
    normalize = Normalize(train.info.mean, train.info.std, channels_last=True)
    generator = torch.Generator(device=device).manual_seed(0)

    def kernel() -> torch.Tensor:
        return normalize(augment_batch(images, augment, generator))

    from run import timed

    kernel_s = timed(kernel, 5, 50)["median"]
    model, opt = _fresh_model()
    x, y = kernel(), train.labels[:PIPE_BATCH].to(device)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step_s = timed(step, 2, 10)["median"]
    share = kernel_s / step_s
    print(
        f"  augmentation kernel: {kernel_s * 1e3:.2f} ms per batch = {share:.1%} of a "
        f"{step_s * 1e3:.0f} ms step",
        flush=True,
    )
    return {
        "model": PIPE_MODEL,
        "batch": PIPE_BATCH,
        "images": n,
        "batched_s": batched_s,
        "batched_images_per_s": n / batched_s,
        "tutorial_s": tutorial_s,
        "tutorial_images_per_s": n2 / tutorial_s,
        "ratio": tutorial_s / batched_s * n / n2,
        "batched_only_images_per_s": batched_only,
        "tutorial_only_images_per_s": tutorial_only,
        "augment_kernel_ms": kernel_s * 1e3,
        "train_step_ms": step_s * 1e3,
        "augment_share_of_step": share,
    }


# -- inference ------------------------------------------------------------------------------


INFER_CASES = [
    ("resnet50", 224, 1),
    ("resnet20", 32, 1),
    ("resnet20", 32, 256),
]


def _variants(model: torch.nn.Module, x: torch.Tensor, workdir: Path) -> dict:
    """name -> callable taking nothing. Each uses its own copy of the model; the first is the
    baseline every speed-up is relative to."""
    from resnetkit.export import export_onnx
    from resnetkit.inference import optimize_for_inference

    cl_x = x.contiguous(memory_format=torch.channels_last)
    cl = _copy(model).to(memory_format=torch.channels_last)
    folded = optimize_for_inference(model, x, method="eager")
    compiled = optimize_for_inference(model, x, method="auto")
    onnx_path = workdir / "model.onnx"
    export_onnx(model, onnx_path, tuple(x.shape), dynamic_batch=True, metadata={})
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's threads spin-wait after each run by default; in a round-robin they steal the cores
    # from the variant timed next (eager ResNet-50 measured 103 instead of 61 ms after it).
    # Without spinning ORT's own latency was the same (44.3 ms both ways, Zen 4).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    x_np = x.numpy()
    return {
        "eager NCHW": lambda: model(x),
        "channels_last": lambda: cl(cl_x),
        "optimize_for_inference(eager): fold BN + channels_last": lambda: folded(x),
        f"optimize_for_inference(auto): {compiled.method}": lambda: compiled(x),
        "onnxruntime": lambda: torch.from_numpy(session.run(None, {input_name: x_np})[0]),
    }


def _copy(model):
    import copy

    return copy.deepcopy(model)


@torch.no_grad()
def bench_inference(device: str, quick: bool) -> dict:
    from run import rate, timed_round_robin

    rows = []
    best: dict[str, float] = {}
    for name, side, batch in INFER_CASES:
        torch.manual_seed(0)
        model = rk.create_model(name)
        _calibrate_bn(model, side)
        x = torch.randn(batch, 3, side, side)
        with tempfile.TemporaryDirectory() as tmp:
            variants = _variants(model, x, Path(tmp))
            reference = model(x)
            scale = reference.abs().max().item()
            repeats = 3 if quick else (10 if side >= 224 else 20)
            timings = timed_round_robin(list(variants.values()), warmup=2, repeats=repeats)
            for (variant, fn), stats in zip(variants.items(), timings, strict=True):
                relative = (fn().float() - reference).abs().max().item() / scale
                row = {
                    "model": name,
                    "input": side,
                    "batch": batch,
                    "variant": variant,
                    "latency_ms": {k: v * 1e3 if k != "n" else v for k, v in stats.items()},
                    "images_per_s": rate(stats, batch),
                    "speedup_vs_eager": timings[0]["median"] / stats["median"],
                    "max_relative_diff_vs_eager": relative,
                }
                rows.append(row)
                print(
                    f"  {name} b{batch:<3d} {variant:55s} {stats['median'] * 1e3:9.2f} ms  "
                    f"x{row['speedup_vs_eager']:.2f}  rel diff {relative:.1e}",
                    flush=True,
                )
                if name == "resnet50" and batch == 1 and relative <= 1e-4:
                    kind = "ort" if variant == "onnxruntime" else "torch"
                    if variant != "eager NCHW":
                        best[kind] = max(best.get(kind, 0.0), row["speedup_vs_eager"])
    return {
        "rows": rows,
        "resnet50_batch1_torch_speedup": best.get("torch"),
        "resnet50_batch1_ort_speedup": best.get("ort"),
    }


def _calibrate_bn(model: torch.nn.Module, side: int) -> None:
    """Give BN trained-like numbers: running statistics measured on a few batches (so the
    logits have a realistic scale, as in a trained model) and a perturbed affine part (so
    folding is exercised on non-trivial values)."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            c = module.num_features
            module.momentum = None  # cumulative average over the calibration batches
            module.weight.data.copy_(1 + 0.2 * torch.randn(c, generator=generator))
            module.bias.data.copy_(0.1 * torch.randn(c, generator=generator))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, side, side, generator=generator))
    model.eval()


# -- time to accuracy ------------------------------------------------------------------------


def time_to_accuracy(run_dir: str | None, train_now: bool, goal: float = 0.94) -> dict:
    """Wall time until the test accuracy first reaches `goal`, from a run's metrics.jsonl."""
    if train_now:
        from resnetkit.config import TrainConfig
        from resnetkit.train import train

        cfg = TrainConfig.from_yaml(
            Path(__file__).resolve().parent.parent / "configs/fashion_mnist_fast.yaml"
        )
        cfg = cfg.replace(out_dir="runs", name="bench-time-to-accuracy")
        run_dir = str(train(cfg, overwrite=True).run_dir)
    rows = [json.loads(line) for line in Path(run_dir, "metrics.jsonl").read_text().splitlines()]
    tested = [r for r in rows if r["test_acc"] is not None]
    hit = next((r for r in tested if r["test_acc"] >= goal), None)
    result = {
        "run": run_dir,
        "goal": goal,
        "seconds": hit["elapsed"] if hit else None,
        "epoch": hit["epoch"] if hit else None,
        "final_acc": tested[-1]["test_acc"],
        "best_acc": max(r["test_acc"] for r in tested),
        "total_seconds": rows[-1]["elapsed"],
    }
    print(
        f"  {goal:.0%} reached: {result['seconds']} s (epoch {result['epoch']}); "
        f"final {result['final_acc']:.2%}",
        flush=True,
    )
    return result
