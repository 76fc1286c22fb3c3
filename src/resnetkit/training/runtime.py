"""What this machine is, and which precision trains fastest on it.

`precision: auto` must not guess from the CPU's name: bf16 autocast is 2.5x *faster* than fp32
on an Intel Xeon with AMX, 1.6x faster on an AMD Zen 4 (AVX512-BF16), and 14x *slower* on a
Zen 3 (AVX2 only), where PyTorch's bf16 convolutions fall back to slow reference kernels. So
the decision is made in two steps:

1. a capability check: without native bf16 instructions (AVX512-BF16 or AMX on x86, the BF16
   extension on Arm) bf16 is never chosen, and nothing is measured;
2. a probe: a few training steps of a small ResNet in each precision (about a second), and
   bf16 only if it is at least `BF16_MARGIN` times faster.

The probe's figures are cached per machine (CPU model, cores, threads, torch version) in
`cache_root()/runtime/precision.json`, so later runs decide instantly. `resnetkit doctor`
prints all of it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..core.cache import cache_root
from ..core.fileio import atomic_write_text
from ..weights.factory import create_model

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# bf16 must beat fp32 by this much to be chosen: it also costs some accuracy headroom, so a
# tie goes to fp32.
BF16_MARGIN = 1.1
# x86 flags (as /proc/cpuinfo spells them) and the Arm feature that mean native bf16 math.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
CACHE_FORMAT = 1


# -- the machine -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as Linux and PyTorch see it."""

    model_name: str
    vendor: str
    family: int
    model: int
    flags: frozenset[str] = field(repr=False)
    isa: str  # torch.backends.cpu.get_cpu_capability(): DEFAULT, AVX2, AVX512, ...
    cores: int  # cores this process may run on

    @property
    def native_bf16(self) -> bool:
        return any(flag in self.flags for flag in NATIVE_BF16_FLAGS)

    @property
    def notable_flags(self) -> list[str]:
        wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")
        return [flag for flag in wanted if flag in self.flags] + (
            ["bf16"] if "bf16" in self.flags else []
        )


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cpuinfo_fields(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields (x86 `flags`, Arm `Features`)."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                if fields:
                    break
                continue
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    return fields


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        return 0


def describe_cpu(cpuinfo_path: str = "/proc/cpuinfo") -> CpuInfo:
    fields = _cpuinfo_fields(cpuinfo_path)
    flags = frozenset((fields.get("flags") or fields.get("Features") or "").split())
    return CpuInfo(
        model_name=fields.get("model name") or platform.processor() or platform.machine(),
        vendor=fields.get("vendor_id") or fields.get("CPU implementer", "unknown"),
        family=_int(fields.get("cpu family", "0")),
        model=_int(fields.get("model", "0")),
        flags=flags,
        isa=torch.backends.cpu.get_cpu_capability(),
        cores=available_cores(),
    )


def matmul_gflops(n: int = 4096, repeats: int = 5, device: str = "cpu") -> dict[str, float]:
    """The practical roof: a large fp32 matmul, median of `repeats` after one warm-up."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    values = sorted(2 * n**3 / t / 1e9 for t in times)
    return {"median": values[len(values) // 2], "min": values[0], "max": values[-1], "n": n}


# -- the precision probe -------------------------------------------------------------------------


@dataclass(frozen=True)
class PrecisionProbe:
    """Training throughput of the probe network in each precision (images/s)."""

    fp32: float
    bf16: float
    network: str = "resnet8, 3x32x32, batch 64, channels_last, SGD"

    @property
    def bf16_speedup(self) -> float:
        return self.bf16 / self.fp32


@dataclass(frozen=True)
class PrecisionDecision:
    """The precision a run uses, and why."""

    requested: str
    precision: str
    reason: str
    probe: PrecisionProbe | None = None
    cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.probe is not None:
            out["probe"] = asdict(self.probe) | {"bf16_speedup": self.probe.bf16_speedup}
        return out


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast for the device, or a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def measure_precision(device: torch.device, steps: int = 5, batch: int = 64) -> PrecisionProbe:
    """Time a few training steps of a small ResNet in fp32 and in bf16 autocast.

    The two precisions alternate step by step and each keeps its fastest step, so a burst of
    other work on the machine slows both alike or neither.
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, 32, 32, generator=generator).to(device)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,), generator=generator).to(device)
    steps_by_precision = {p: _probe_step(device, p, images, labels) for p in ("fp32", "bf16")}
    for step in steps_by_precision.values():
        step()  # the first step builds oneDNN primitives: never timed
    best = dict.fromkeys(steps_by_precision, float("inf"))
    for _ in range(steps):
        for precision, step in steps_by_precision.items():
            start = time.perf_counter()
            step()
            best[precision] = min(best[precision], time.perf_counter() - start)
    return PrecisionProbe(fp32=batch / best["fp32"], bf16=batch / best["bf16"])


def _probe_step(
    device: torch.device, precision: str, images: torch.Tensor, labels: torch.Tensor
) -> Callable[[], None]:
    model = create_model("resnet8", num_classes=10).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        with autocast(device, precision):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step


def choose_precision(native_bf16: bool, probe: PrecisionProbe | None) -> tuple[str, str]:
    """The `auto` rule: bf16 only with native support and a measured gain (pure function)."""
    if not native_bf16:
        return "fp32", "no native bf16 on this device: bf16 autocast would be far slower"
    if probe is None:
        return "fp32", "bf16 not measured"
    speedup = probe.bf16_speedup
    if speedup >= BF16_MARGIN:
        return "bf16", f"bf16 autocast measured {speedup:.2f}x faster than fp32"
    return "fp32", f"bf16 autocast measured {speedup:.2f}x fp32's speed (< {BF16_MARGIN}x)"


# -- the per-machine cache -----------------------------------------------------------------------


def machine_key(device: torch.device, cpu: CpuInfo | None = None) -> str:
    """What the probe's result depends on: the device, core and thread counts, torch."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = (cpu or describe_cpu()).model_name
    return f"{device.type}|{name}|{available_cores()} cores|{torch.get_num_threads()} threads|" + (
        f"torch {torch.__version__}"
    )


def probe_cache_path() -> Path:
    return cache_root() / "runtime" / "precision.json"


def read_cached_probe(key: str, path: Path | None = None) -> PrecisionProbe | None:
    path = path or probe_cache_path()
    try:
        entries = json.loads(path.read_text())
        entry = entries["machines"][key] if entries.get("format") == CACHE_FORMAT else None
        return None if entry is None else PrecisionProbe(float(entry["fp32"]), float(entry["bf16"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent or unreadable: measure again


def write_cached_probe(key: str, probe: PrecisionProbe, path: Path | None = None) -> None:
    path = path or probe_cache_path()
    try:
        entries = json.loads(path.read_text())
        if not isinstance(entries, dict) or entries.get("format") != CACHE_FORMAT:
            raise ValueError
    except (OSError, ValueError):
        entries = {"format": CACHE_FORMAT, "machines": {}}
    entries.setdefault("machines", {})[key] = asdict(probe) | {"measured": time.time()}
    try:
        atomic_write_text(path, json.dumps(entries, indent=1, sort_keys=True) + "\n")
    except OSError as exc:  # a read-only home must not stop training
        log.debug("could not cache the precision probe in %s: %s", path, exc)


Probe = Callable[[torch.device], PrecisionProbe]


def probe_for(
    device: torch.device, measure: Probe | None = None, use_cache: bool = True
) -> tuple[PrecisionProbe, bool]:
    """The probe's figures for this machine, from the cache when present; (probe, cached)."""
    key = machine_key(device)
    if use_cache and (cached := read_cached_probe(key)) is not None:
        return cached, True
    probe = (measure or measure_precision)(device)
    if use_cache:
        write_cached_probe(key, probe)
    return probe, False


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return describe_cpu().native_bf16


def resolve_precision(
    requested: str, device: torch.device, measure: Probe | None = None, use_cache: bool = True
) -> PrecisionDecision:
    """Turn the configured precision into the one to train with, measuring where needed."""
    if requested == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs CUDA; use bf16 or auto on a CPU")
    if requested in ("fp32", "fp16"):
        return PrecisionDecision(requested, requested, "as configured")
    native = native_bf16(device)
    if device.type == "cuda":
        # Every CUDA GPU with bf16 support (Ampere and newer) runs it on tensor cores.
        choice = "bf16" if native else "fp32"
        if requested == "bf16":
            return PrecisionDecision(requested, "bf16", "as configured")
        return PrecisionDecision(requested, choice, f"CUDA bf16 support: {native}")
    if not native and requested == "auto":
        return PrecisionDecision(requested, *choose_precision(False, None))
    probe, cached = probe_for(device, measure, use_cache)
    if requested == "bf16":
        if probe.bf16_speedup < 1:
            log.warning(
                "precision bf16 as configured, but on this machine the probe measured bf16 "
                "autocast %.1fx slower than fp32 (%.0f vs %.0f images/s); precision auto or "
                "fp32 would train faster",
                1 / probe.bf16_speedup,
                probe.bf16,
                probe.fp32,
            )
        return PrecisionDecision(requested, "bf16", "as configured", probe, cached)
    return PrecisionDecision(requested, *choose_precision(native, probe), probe, cached)


# -- resnetkit doctor ---------------------------------------------------------------------------


def doctor_report(device: torch.device | None = None, measure: bool = True) -> dict[str, Any]:
    """Everything a bug report about speed needs, as plain data."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cpu = describe_cpu()
    report: dict[str, Any] = {
        "cpu": cpu.model_name,
        "vendor": cpu.vendor,
        "family_model": f"{cpu.family}/{cpu.model}",
        "isa": cpu.isa,
        "cpu_flags": cpu.notable_flags,
        "native_bf16": cpu.native_bf16,
        "cores": cpu.cores,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "probe_cache": str(probe_cache_path()),
    }
    if measure:
        report["matmul_gflops"] = round(matmul_gflops(device=device.type)["median"], 1)
        decision = resolve_precision("auto", device)
        report["auto_precision"] = decision.as_dict()
    return report


def format_doctor(report: dict[str, Any]) -> str:
    lines = [
        f"cpu            {report['cpu']} ({report['vendor']}, family/model "
        f"{report['family_model']})",
        f"vector ISA     {report['isa']} (PyTorch); flags: {' '.join(report['cpu_flags'])}",
        f"native bf16    {'yes' if report['native_bf16'] else 'no'}",
        f"cores/threads  {report['cores']} available, {report['threads']} torch threads",
        f"torch          {report['torch']} (Python {report['python']}), device {report['device']}"
        + (f" = {report['cuda']}" if report.get("cuda") else ""),
    ]
    if "matmul_gflops" in report:
        lines.append(f"matmul roof    {report['matmul_gflops']:.1f} GFLOP/s (4096x4096 fp32)")
    decision = report.get("auto_precision")
    if decision:
        probe = decision.get("probe")
        lines.append(f"precision auto {decision['precision']}: {decision['reason']}")
        if probe:
            source = "cached" if decision["cached"] else "measured now"
            lines.append(
                f"probe          fp32 {probe['fp32']:.0f} img/s, bf16 {probe['bf16']:.0f} img/s "
                f"({probe['network']}; {source}; cache {report['probe_cache']})"
            )
    return "\n".join(lines)
