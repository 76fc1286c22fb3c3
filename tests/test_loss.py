"""The soft-target cross-entropy that mixup and cutmix train with."""

import pytest
import torch
import torch.nn.functional as F

from resnetkit.data.mixing import mix_targets
from resnetkit.training.loss import soft_target_cross_entropy


def test_with_one_hot_targets_it_equals_cross_entropy():
    logits, labels = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    targets = F.one_hot(labels, 5).float()
    torch.testing.assert_close(
        soft_target_cross_entropy(logits, targets), F.cross_entropy(logits, labels)
    )


def test_a_mixed_target_gives_the_lambda_weighted_sum_of_the_two_losses():
    logits, labels = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    loss = soft_target_cross_entropy(logits, mix_targets(labels, 5, 0.3), reduction="none")
    own = F.cross_entropy(logits, labels, reduction="none")
    partner = F.cross_entropy(logits, labels.flip(0), reduction="none")
    torch.testing.assert_close(loss, 0.3 * own + 0.7 * partner)


def test_low_precision_logits_give_a_float32_loss():
    logits = torch.randn(3, 4).bfloat16()
    loss = soft_target_cross_entropy(logits, torch.full((3, 4), 0.25))
    assert loss.dtype == torch.float32


def test_mismatched_shapes_and_unknown_reductions_are_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        soft_target_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="mean, sum or none"):
        soft_target_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 3), reduction="avg")
