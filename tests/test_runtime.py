"""precision: auto — the capability check, the probe's rule, its per-machine cache, and that the
precision actually used lands in the run folder, the checkpoints and the report."""

import json
import logging

import pytest
import torch

from resnetkit import runtime
from resnetkit.checkpoint import load_model_checkpoint
from resnetkit.distributed import from_environment
from resnetkit.runtime import PrecisionProbe, choose_precision, resolve_precision
from resnetkit.train import decide_precision, train
from train_helpers import tiny_config

CPU = torch.device("cpu")
FAST_BF16 = PrecisionProbe(fp32=500.0, bf16=1250.0)  # an AMX Xeon's kind of figures
SLOW_BF16 = PrecisionProbe(fp32=588.0, bf16=43.0)  # the Zen 3's figures from the issue
TIE = PrecisionProbe(fp32=500.0, bf16=520.0)


class CountingProbe:
    """Stands in for the timed probe: returns fixed figures and counts the calls."""

    def __init__(self, probe: PrecisionProbe) -> None:
        self.probe, self.calls = probe, 0

    def __call__(self, device: torch.device) -> PrecisionProbe:
        self.calls += 1
        return self.probe


@pytest.fixture
def machine(monkeypatch):
    """A CPU whose bf16 support and probe figures the test chooses."""

    def configure(native: bool, probe: PrecisionProbe) -> CountingProbe:
        counting = CountingProbe(probe)
        monkeypatch.setattr(runtime, "native_bf16", lambda device: native)
        monkeypatch.setattr(runtime, "measure_precision", counting)
        return counting

    return configure


def test_without_native_bf16_auto_is_fp32_and_nothing_is_measured(machine):
    probe = machine(native=False, probe=FAST_BF16)
    decision = resolve_precision("auto", CPU)
    assert decision.precision == "fp32" and probe.calls == 0
    assert "no native bf16" in decision.reason


def test_with_native_bf16_auto_follows_the_measurement(machine):
    machine(native=True, probe=FAST_BF16)
    assert resolve_precision("auto", CPU, use_cache=False).precision == "bf16"
    machine(native=True, probe=TIE)
    decision = resolve_precision("auto", CPU, use_cache=False)
    assert decision.precision == "fp32" and "1.04x" in decision.reason


@pytest.mark.parametrize(
    ("native", "probe", "expected"),
    [
        (False, FAST_BF16, "fp32"),
        (True, FAST_BF16, "bf16"),
        (True, SLOW_BF16, "fp32"),
        (True, TIE, "fp32"),
        (True, None, "fp32"),
    ],
)
def test_the_auto_rule_needs_native_support_and_a_ten_percent_gain(native, probe, expected):
    assert choose_precision(native, probe)[0] == expected


def test_the_probe_is_cached_per_machine_and_measured_once(machine):
    probe = machine(native=True, probe=FAST_BF16)
    first = resolve_precision("auto", CPU)
    second = resolve_precision("auto", CPU)
    assert probe.calls == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.probe == FAST_BF16
    entries = json.loads(runtime.probe_cache_path().read_text())["machines"]
    assert list(entries) == [runtime.machine_key(CPU)]
    assert f"{torch.get_num_threads()} threads" in runtime.machine_key(CPU)


def test_a_corrupt_cache_is_measured_again(machine):
    probe = machine(native=True, probe=FAST_BF16)
    runtime.probe_cache_path().parent.mkdir(parents=True)
    runtime.probe_cache_path().write_text("{not json")
    assert resolve_precision("auto", CPU).precision == "bf16" and probe.calls == 1
    assert resolve_precision("auto", CPU).cached


def test_explicit_bf16_where_it_is_slow_trains_anyway_and_says_how_much_slower(machine, caplog):
    machine(native=True, probe=SLOW_BF16)
    with caplog.at_level(logging.WARNING, logger="resnetkit.training.runtime"):
        decision = resolve_precision("bf16", CPU)
    assert decision.precision == "bf16"
    assert "13.7x slower than fp32" in caplog.text


def test_explicit_fp32_is_never_measured(machine):
    probe = machine(native=True, probe=FAST_BF16)
    assert resolve_precision("fp32", CPU).precision == "fp32" and probe.calls == 0


def test_fp16_on_a_cpu_is_refused():
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        resolve_precision("fp16", CPU)


def test_the_precision_used_is_recorded_in_run_folder_checkpoint_and_report(tmp_path, machine):
    machine(native=True, probe=FAST_BF16)
    result = train(tiny_config(tmp_path, epochs=1, precision="auto"))
    record = json.loads((result.run_dir / "runtime.json").read_text())
    assert (record["requested"], record["precision"]) == ("auto", "bf16")
    assert record["probe"]["bf16_speedup"] == pytest.approx(2.5)
    meta = load_model_checkpoint(result.run_dir / "checkpoints/best.safetensors").metadata
    assert meta["precision"] == "bf16"
    assert "precision bf16" in (result.run_dir / "report.md").read_text()


def test_a_resumed_run_keeps_the_precision_it_started_with(tmp_path, machine):
    machine(native=True, probe=FAST_BF16)
    cfg = tiny_config(tmp_path, epochs=1, precision="auto")
    first = train(cfg)
    machine(native=False, probe=FAST_BF16)  # "another machine": auto would now pick fp32
    decision = decide_precision(cfg, CPU, first.run_dir, True, from_environment())
    assert decision.precision == "bf16" and "resumed" in decision.reason


def test_the_real_probe_measures_both_precisions():
    probe = runtime.measure_precision(CPU, steps=1, batch=8)
    assert probe.fp32 > 0 and probe.bf16 > 0


def test_doctor_names_the_cpu_its_isa_and_the_auto_choice(machine):
    machine(native=True, probe=FAST_BF16)
    report = runtime.doctor_report(CPU, measure=False)
    assert report["isa"] == torch.backends.cpu.get_cpu_capability()
    assert report["threads"] == torch.get_num_threads()
    text = runtime.format_doctor(
        report
        | {"matmul_gflops": 100.0, "auto_precision": resolve_precision("auto", CPU).as_dict()}
    )
    assert "vector ISA" in text and "precision auto bf16" in text and "2.50x" in text


def test_every_recipe_and_the_default_config_use_precision_auto():
    from pathlib import Path

    from resnetkit.config import TrainConfig

    configs = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))
    assert configs
    assert {TrainConfig.from_yaml(path).precision for path in configs} == {"auto"}
    assert TrainConfig().precision == "auto"
