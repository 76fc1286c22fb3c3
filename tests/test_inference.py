"""optimize_for_inference: a faster copy that computes the same logits, or a clear refusal."""

from __future__ import annotations

import pytest
import torch

import resnetkit as rk
from resnetkit import inference
from resnetkit.inference import InferenceError, optimize_for_inference


def trained_like(name: str = "resnet8") -> torch.nn.Module:
    """A model whose BatchNorm layers hold non-trivial statistics, so folding changes weights."""
    torch.manual_seed(0)
    model = rk.create_model(name, num_classes=10)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, 32, 32) * 2 + 0.5)
    return model.eval()


def test_eager_method_folds_batchnorm_and_matches_the_logits():
    model = trained_like()
    x = torch.randn(4, 3, 32, 32)
    fast = optimize_for_inference(model, x, method="eager")
    assert fast.method == "eager"
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    other = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(other)
    torch.testing.assert_close(fast(other), expected, rtol=1e-4, atol=1e-4)


def test_the_original_model_is_left_untouched():
    model = trained_like()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimize_for_inference(model, torch.randn(2, 3, 32, 32), method="eager")
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_outputs_carry_no_autograd_graph():
    fast = optimize_for_inference(trained_like(), torch.randn(2, 3, 32, 32), method="eager")
    assert not fast(torch.randn(2, 3, 32, 32, requires_grad=True)).requires_grad


def test_an_optimised_model_refuses_to_train():
    fast = optimize_for_inference(trained_like(), torch.randn(2, 3, 32, 32), method="eager")
    fast.eval()  # allowed: it is eval-only already
    with pytest.raises(InferenceError, match="cannot train"):
        fast.train()


def test_unknown_method_is_named():
    with pytest.raises(InferenceError, match="unknown method 'fast'"):
        optimize_for_inference(trained_like(), torch.randn(1, 3, 32, 32), method="fast")


def test_compile_without_a_compiler_says_what_to_install(monkeypatch):
    monkeypatch.setattr(inference.shutil, "which", lambda name: None)
    with pytest.raises(InferenceError, match="C\\+\\+ compiler"):
        optimize_for_inference(trained_like(), torch.randn(1, 3, 32, 32), method="compile")


def test_auto_without_a_compiler_uses_the_eager_path(monkeypatch):
    monkeypatch.setattr(inference.shutil, "which", lambda name: None)
    fast = optimize_for_inference(trained_like(), torch.randn(1, 3, 32, 32), method="auto")
    assert fast.method == "eager"


def test_auto_falls_back_when_compiling_fails(monkeypatch, caplog):
    def broken_compile(module):
        def fail(*args, **kwargs):
            raise RuntimeError("no working C++ toolchain")

        return fail

    monkeypatch.setattr(inference, "compiler_available", lambda device: True)
    monkeypatch.setattr(torch, "compile", broken_compile)
    fast = optimize_for_inference(trained_like(), torch.randn(1, 3, 32, 32), method="auto")
    assert fast.method == "eager"
    assert "compiling failed" in caplog.text
    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.raises(InferenceError, match="compiling the model failed"):
        optimize_for_inference(trained_like(), torch.randn(1, 3, 32, 32), method="compile")


def test_logits_that_drift_are_refused(monkeypatch):
    real_fold = inference.fold_bn

    def fold_with_a_bug(model):
        folded = real_fold(model)
        with torch.no_grad():
            folded.fc.bias.add_(1.0)
        return folded

    monkeypatch.setattr(inference, "fold_bn", fold_with_a_bug)
    with pytest.raises(InferenceError, match="differ from the original"):
        optimize_for_inference(trained_like(), torch.randn(2, 3, 32, 32), method="eager")


@pytest.mark.skipif(
    not inference.compiler_available(torch.device("cpu")), reason="no C++ compiler for Inductor"
)
def test_compiled_path_matches_the_logits():
    model = trained_like()
    x = torch.randn(2, 3, 32, 32)
    fast = optimize_for_inference(model, x, method="compile")
    assert fast.method == "compile"
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(fast(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("compiled_is_faster", "kept"), [(True, "compile"), (False, "eager")])
def test_auto_keeps_whichever_path_measured_faster(monkeypatch, compiled_is_faster, kept):
    monkeypatch.setattr(inference, "compiler_available", lambda device: True)
    monkeypatch.setattr(torch, "compile", lambda module: module)  # stands in for Inductor
    monkeypatch.setattr(inference, "_faster", lambda first, second, x: compiled_is_faster)
    fast = optimize_for_inference(trained_like(), torch.randn(1, 3, 32, 32), method="auto")
    assert fast.method == kept


def test_timing_compares_the_two_paths_on_the_example(monkeypatch):
    """With a fake clock: each call of a candidate advances it by that candidate's cost."""
    clock = [0.0]
    monkeypatch.setattr(inference.time, "perf_counter", lambda: clock[0])

    class Costs(torch.nn.Module):
        def __init__(self, seconds, method):
            super().__init__()
            self.seconds, self.method = seconds, method

        def __call__(self, x):
            clock[0] += self.seconds
            return x

    quick, slow = Costs(0.001, "compile"), Costs(0.003, "eager")
    x = torch.randn(1, 3, 32, 32)
    assert inference._faster(quick, slow, x)
    assert not inference._faster(slow, quick, x)
