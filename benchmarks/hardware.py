"""What machine is this, and what is its fp32 peak? Derived from the CPU, printed, overridable.

peak = cores x clock x (fp32 FLOP per cycle per core), where FLOP per cycle is
FMA units x SIMD lanes x 2 (a fused multiply-add is two FLOPs). The table below is by
micro-architecture, because the instruction set alone does not tell the FMA count: AMD Zen 4
runs AVX-512 on 256-bit units ("double-pumped"), and Intel's client cores with AVX-512
(Ice Lake, Tiger Lake, Rocket Lake) have one 512-bit FMA unit where the server parts have two.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass

import torch

from resnetkit.runtime import matmul_gflops  # noqa: F401  (re-exported: one owner)


@dataclass(frozen=True)
class Machine:
    name: str  # short identifier used for the results file name
    cpu: str
    vendor: str
    family: int
    model: int
    cores: int
    mhz: float
    flop_per_cycle: int
    fma_units: int
    simd_fp32_lanes: int
    derivation: str
    torch_version: str
    torch_threads: int

    @property
    def peak_gflops(self) -> float:
        return self.cores * self.mhz / 1e3 * self.flop_per_cycle

    def as_dict(self) -> dict:
        return asdict(self) | {"peak_gflops": self.peak_gflops}


# (vendor, family, models) -> (FMA units, fp32 lanes per unit, micro-architecture)
INTEL_SERVER_AVX512 = {85, 106, 108, 143, 207, 173, 174}  # Skylake-SP .. Granite Rapids
INTEL_CLIENT_AVX512 = {102, 125, 126, 140, 141, 167}  # Cannon/Ice/Tiger/Rocket Lake


def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def _max_mhz(info: dict[str, str]) -> float:
    path = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
    try:
        with open(path) as handle:
            return int(handle.read()) / 1e3
    except (OSError, ValueError):
        return float(info.get("cpu MHz", "0") or 0)


def _fma_layout(
    vendor: str, family: int, model: int, flags: set[str], name: str = ""
) -> tuple[int, int, str]:
    if vendor == "AuthenticAMD":
        if family == 0x19 and model >= 0x10 and "avx512f" in flags:
            return 2, 8, "AMD Zen 4: AVX-512 on 2 x 256-bit FMA units (double-pumped)"
        if family >= 0x1A and "avx512f" in flags:
            return 2, 16, "AMD Zen 5: 2 x 512-bit FMA units"
        if family in (0x17, 0x19):
            return 2, 8, "AMD Zen 1-3: 2 x 256-bit FMA units"
    if vendor == "GenuineIntel" and "avx512f" in flags:
        if "Xeon" in name:
            # Virtual machines often report a generic model number; a Xeon is a server part.
            return 2, 16, f"Intel Xeon (model {model}): 2 x 512-bit FMA units"
        if model in INTEL_CLIENT_AVX512:
            return 1, 16, f"Intel client core with AVX-512 (model {model}): 1 x 512-bit FMA unit"
        if model in INTEL_SERVER_AVX512:
            return 2, 16, f"Intel server core (model {model}): 2 x 512-bit FMA units"
        return 2, 16, f"Intel AVX-512 core (model {model}, assumed server): 2 x 512-bit FMA"
    if "avx2" in flags and "fma" in flags:
        return 2, 8, "AVX2 + FMA core: 2 x 256-bit FMA units"
    if "asimd" in flags or platform.machine() in ("aarch64", "arm64"):
        return 2, 4, "Arm NEON: 2 x 128-bit FMA units (assumed)"
    return 1, 4, "unknown core: 1 x 128-bit FMA unit (assumed)"


def detect_machine(name: str | None = None) -> Machine:
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    vendor = info.get("vendor_id", platform.processor() or "unknown")
    family = int(info.get("cpu family", "0") or 0)
    model = int(info.get("model", "0") or 0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mhz = _max_mhz(info)
    units, lanes, arch = _fma_layout(vendor, family, model, flags, info.get("model name", ""))
    per_cycle = units * lanes * 2
    cpu = info.get("model name", platform.processor() or "unknown CPU")
    derivation = (
        f"{cores} cores x {mhz / 1e3:.2f} GHz x {per_cycle} FLOP/cycle "
        f"({units} FMA units x {lanes} fp32 lanes x 2) = "
        f"{cores * mhz / 1e3 * per_cycle:.1f} GFLOP/s; {arch}"
    )
    slug = re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-")
    # Virtual machines often report a bare "AMD EPYC" for Zen 3 and Zen 4 alike: the family
    # and model numbers keep their results files apart.
    return Machine(
        name=name or f"cpu-{slug}-f{family}m{model}-{cores}c",
        cpu=cpu,
        vendor=vendor,
        family=family,
        model=model,
        cores=cores,
        mhz=mhz,
        flop_per_cycle=per_cycle,
        fma_units=units,
        simd_fp32_lanes=lanes,
        derivation=derivation,
        torch_version=torch.__version__,
        torch_threads=torch.get_num_threads(),
    )
