"""`ResNet`: the one model class, built only from a `ResNetSpec`.

The uniform API (as timm's): `forward`, `forward_features`, `forward_head`, `features`,
`reset_classifier`, `num_features`, `feature_info`, `pretrained_cfg`. Parameter names match
torchvision's for v1 ImageNet-shaped models (`conv1`, `bn1`, `layer1.0.conv1`,
`layer1.0.downsample.0`, `fc`).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvPoolEntry, drop_path_rates, make_activation, make_block
from .pretrained_cfg import default_cfg, fit_cfg
from .spec import ResNetSpec


class ResNet(nn.Module):
    """A residual (or plain) network described entirely by `spec`."""

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        if not isinstance(spec, ResNetSpec):
            raise TypeError(f"ResNet expects a ResNetSpec, got {type(spec).__name__}")
        self.spec = spec
        self.in_chans = spec.in_chans
        self.min_input_size = spec.min_input_size
        self.num_classes = spec.num_classes
        self.num_features = spec.num_features

        self._build_stem(spec)
        channels = self._build_stages(spec)
        # v2 moves BN-ReLU in front of each conv, so one more is needed after the last addition.
        self.final_bn = nn.BatchNorm2d(channels) if spec.preact else None
        self.final_relu = make_activation(spec.act) if spec.preact else None
        # torchvision's attribute name, whichever pooling the spec picks (it has no weights).
        self.avgpool = (
            nn.AdaptiveMaxPool2d(1) if spec.global_pool == "max" else nn.AdaptiveAvgPool2d(1)
        )
        self.drop_rate = float(spec.drop_rate)
        self.dropout = nn.Dropout(self.drop_rate) if self.drop_rate > 0 else nn.Identity()
        self.fc = self._make_classifier(spec.num_classes)
        self.logit_scale = float(spec.logit_scale)
        self.feature_info = [
            {"module": name, "num_chs": spec.out_channels(stage.width), "reduction": reduction}
            for name, stage, reduction in zip(
                self.stage_names, spec.stages, spec.stage_reductions(), strict=True
            )
        ]
        self._init_weights(spec.zero_init_residual, dirac=spec.conv_init == "dirac")
        if not spec.norm_scale:
            self._fix_norm_scales()
        # What inputs the weights expect (timm's keys); loading weights replaces it.
        self.pretrained_cfg = default_cfg(spec)

    # -- construction -------------------------------------------------------------------------

    def _build_stem(self, spec: ResNetSpec) -> None:
        width, in_chans = spec.stem_width, spec.in_chans
        if spec.stem == "imagenet":
            self.conv1: nn.Module = nn.Conv2d(in_chans, width, 7, 2, 3, bias=False)
        elif spec.stem == "deep":
            half = width // 2
            self.conv1 = nn.Sequential(
                nn.Conv2d(in_chans, half, 3, 2, 1, bias=False),
                nn.BatchNorm2d(half),
                make_activation(spec.act),
                nn.Conv2d(half, half, 3, 1, 1, bias=False),
                nn.BatchNorm2d(half),
                make_activation(spec.act),
                nn.Conv2d(half, width, 3, 1, 1, bias=False),
            )
        elif spec.stem == "patch":
            # Nothing normalises its output, so this conv keeps its bias.
            self.conv1 = nn.Conv2d(in_chans, width, 2, 1, 0, bias=True)
        else:
            self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        bare_conv_stem = spec.preact and spec.stem == "cifar"
        no_norm = bare_conv_stem or spec.stem == "patch"
        self.bn1 = None if no_norm else nn.BatchNorm2d(width)
        self.relu = None if bare_conv_stem else make_activation(spec.act)
        # The downsampling stems end in a stride-2 max-pool (features.py reads it the same way).
        self.maxpool = nn.MaxPool2d(3, 2, 1) if spec.stem_stride > 1 else nn.Identity()

    def _build_stages(self, spec: ResNetSpec) -> int:
        """Add layer1.. as Sequentials of units; returns the last stage's output channels."""
        channels = spec.stem_width
        # A v1 stem always ends in BN-ReLU; a v2 CIFAR stem is a bare conv whose output the
        # first unit activates (He et al. 2016, appendix).
        stem_activates = self.relu is not None
        rates = iter(drop_path_rates(spec.drop_path_rate, sum(s.blocks for s in spec.stages)))
        self.stage_names: list[str] = []
        for index, stage in enumerate(spec.stages):
            units: list[nn.Module] = []
            stride = stage.stride
            if spec.stage_entry == "conv_pool":
                units.append(ConvPoolEntry(channels, stage.width, stride, spec.act))
                channels, stride = stage.width, 1
            for unit_index in range(stage.blocks):
                units.append(
                    make_block(
                        spec.block,
                        spec.preact,
                        in_ch=channels,
                        width=stage.width,
                        stride=stride if unit_index == 0 else 1,
                        shortcut=spec.shortcut,
                        groups=spec.groups,
                        inner=spec.inner_width(stage.width),
                        first_unit=index == 0 and unit_index == 0,
                        stem_activates=stem_activates,
                        drop_path_rate=next(rates),
                        act=spec.act,
                    )
                )
                channels = spec.out_channels(stage.width)
            name = f"layer{index + 1}"
            self.add_module(name, nn.Sequential(*units))
            self.stage_names.append(name)
        return channels

    def fold_pairs(self) -> tuple[tuple[str, str], ...]:
        """The stem's (conv, BN) pairs that `resnetkit.models.fold.fold_bn` can fold (the units
        declare their own): conv1 then bn1, none in the v2 bare-conv CIFAR stem, and in the
        deep stem each of its three convs with the BN that follows it."""
        if self.bn1 is None:
            return ()
        if self.spec.stem == "deep":  # Sequential(conv, BN, ReLU, conv, BN, ReLU, conv), bn1
            return (("conv1.0", "conv1.1"), ("conv1.3", "conv1.4"), ("conv1.6", "bn1"))
        return (("conv1", "bn1"),)

    def _make_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _init_weights(self, zero_init_residual: bool, dirac: bool = False) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # He et al. 2015 ("Delving deep into rectifiers"), fan-out as in torchvision.
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
                if dirac and _passes_through(module):
                    # A partial identity: the first filters copy their input channel.
                    kept = min(module.in_channels, module.out_channels)
                    with torch.no_grad():
                        nn.init.dirac_(module.weight[:kept])
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            # Goyal et al. 2017: each unit starts as the identity, which helps large batches.
            for stage in self.stages():
                for unit in stage:
                    if hasattr(unit, "zero_init_last"):  # a 'conv_pool' stage opening has none
                        unit.zero_init_last()

    def _fix_norm_scales(self) -> None:
        """Every BatchNorm's scale stays 1: only the shift trains (spec `norm_scale` false).
        The weights remain parameters, so state dicts keep torchvision's keys."""
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d) and module.weight is not None:
                module.weight.requires_grad_(False)

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, name) for name in self.stage_names]

    # -- forward ------------------------------------------------------------------------------

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear ValueError for a batch this network cannot take."""
        if x.dim() != 4:
            raise ValueError(
                f"expected a 4-D batch (N, C, H, W), got shape {list(x.shape)}; "
                f"add a batch dimension with x.unsqueeze(0)"
            )
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected {self.in_chans} input channels, got {x.shape[1]} "
                f"(shape {list(x.shape)}); build the model with in_chans={x.shape[1]}"
            )
        if x.shape[2] < self.min_input_size or x.shape[3] < self.min_input_size:
            raise ValueError(
                f"input {x.shape[2]}x{x.shape[3]} is smaller than this network accepts: at "
                f"least {self.min_input_size}x{self.min_input_size}; "
                f"resize the images or use a model with a cifar stem"
            )

    def activate_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem's BN and activation after its conv (the v2 bare conv stem has neither, the
        patch stem no BN)."""
        if self.bn1 is not None:
            x = self.bn1(x)
        return self.relu(x) if self.relu is not None else x

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.activate_stem(self.conv1(x)))

    def _final_activation(self, x: torch.Tensor) -> torch.Tensor:
        if self.final_bn is not None and self.final_relu is not None:
            x = self.final_relu(self.final_bn(x))
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, (N, num_features, H/r, W/r), before pooling."""
        self.check_input(x)
        x = self.forward_stem(x)
        for stage in self.stages():
            x = stage(x)
        return self._final_activation(x)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One tensor per stage (channels and reduction as in `feature_info`).

        For v2 models the last entry includes the final BN-ReLU, so it equals
        `forward_features(x)`.
        """
        self.check_input(x)
        x = self.forward_stem(x)
        outputs = []
        for stage in self.stages():
            x = stage(x)
            outputs.append(x)
        outputs[-1] = self._final_activation(outputs[-1])
        return outputs

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global pool (average, or maximum with `global_pool: max`), flatten per sample
        (never across the batch), dropout, fc, times `logit_scale`."""
        x = torch.flatten(self.avgpool(x), 1)
        if pre_logits:
            return x
        logits = self.fc(self.dropout(x))
        return logits * self.logit_scale if self.logit_scale != 1.0 else logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # -- classifier ---------------------------------------------------------------------------

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised one; the backbone is untouched."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
        device = next(self.parameters()).device
        self.fc = self._make_classifier(num_classes).to(device)
        self.num_classes = num_classes
        self.spec = self.spec.replace(num_classes=num_classes)
        self.pretrained_cfg = fit_cfg(self.pretrained_cfg, self.spec)

    def extra_repr(self) -> str:
        return f"spec={self.spec.name or 'custom'}"


def _passes_through(conv: nn.Conv2d) -> bool:
    """Whether a conv can start as an identity on its first channels: 3x3, stride 1, ungrouped
    (the 7x7 and 2x2 stems, strided convs, projections and grouped convs keep their plain
    initialisation)."""
    return conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.groups == 1
