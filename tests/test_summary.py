"""The summary table: per-layer shapes, params and MACs that add up to the totals."""

import torch

import resnetkit as rk
from resnetkit.summary import count_macs, count_params, summary


def test_rows_add_up_to_the_totals():
    model = rk.create_model("resnet50", num_classes=10, in_chans=1)
    table = summary(model, input_size=(1, 28, 28))
    assert table.total_params == count_params(model) == sum(r.params for r in table.rows)
    assert table.total_macs == sum(r.macs for r in table.rows)
    assert table.total_macs == count_macs(model, (1, 28, 28))


def test_rows_are_blocks_with_their_output_shapes():
    table = summary(rk.create_model("resnet20"), input_size=(3, 32, 32))
    shapes = {r.name: r.output_shape for r in table.rows}
    assert shapes["layer1.0"] == (1, 16, 32, 32)
    assert shapes["layer3.2"] == (1, 64, 8, 8)
    assert shapes["fc"] == (1, 10)
    kinds = {r.name: r.kind for r in table.rows}
    assert kinds["layer2.0"] == "BasicBlock"


def test_text_has_the_keras_layout():
    text = str(summary(rk.create_model("resnet20")))
    assert "Layer (type)" in text and "Output shape" in text and "Param #" in text
    assert "Total params: 269,722" in text
    assert "Trainable params: 269,722" in text


def test_frozen_parameters_are_non_trainable():
    model = rk.create_model("resnet20")
    for p in model.layer1.parameters():
        p.requires_grad_(False)
    table = summary(model)
    assert table.non_trainable_params == count_params(model.layer1) > 0


def test_summary_leaves_the_model_in_training_mode():
    model = rk.create_model("resnet20").train()
    summary(model, batch_size=2)
    assert model.training
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
