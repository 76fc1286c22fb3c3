"""The catalogue of pretrained weights as plain data: torchvision's ImageNet-1K releases
(BSD-3-Clause) that can be downloaded, the weights that ship inside the package, and their
names (`model.tag`, as timm writes them). Nothing here downloads; `download` fetches and
`pretrained` loads."""

from __future__ import annotations

import fnmatch
import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..models.pretrained_cfg import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    make_cfg,
)
from ..models.spec import ResNetSpec
from .checkpoint import pretrained_cfg_from_metadata
from .io import read_metadata

DEFAULT_TAG = "imagenet"
IMAGENET_CLASSES = 1000


class PretrainedError(ValueError):
    """Pretrained weights that do not exist, cannot be fetched or fail their checksum."""


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


@dataclass(frozen=True)
class PretrainedWeights:
    """One downloadable set of weights and what a user needs to know to use it well."""

    model: str  # registered model name
    tag: str  # e.g. "imagenet", "imagenet_v2"
    url: str
    sha256_prefix: str  # the hex digits in the file name (torch.hub's convention)
    sha256: str | None = None  # the full digest, where it has been verified
    num_classes: int = 1000
    input_size: int = 224  # evaluation centre crop
    resize_size: int = 256  # shorter side before the crop
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    top1: float | None = None  # ImageNet-1K validation accuracy (%) as published
    top5: float | None = None
    num_params: int | None = None
    license: str = "BSD-3-Clause"
    source: str = ""  # who released it, e.g. "torchvision ResNet50_Weights.IMAGENET1K_V2"
    recipe: str = ""  # where the training recipe is described

    def __post_init__(self) -> None:
        prefix = self.sha256_prefix.lower()
        if len(prefix) < 8 or not _is_hex(prefix):
            raise ValueError(
                f"sha256_prefix of {self.key}: got {self.sha256_prefix!r}; expected at least 8 "
                f"hex digits"
            )
        object.__setattr__(self, "sha256_prefix", prefix)
        if self.sha256 is not None:
            full = self.sha256.lower()
            if len(full) != 64 or not _is_hex(full) or not full.startswith(prefix):
                raise ValueError(
                    f"sha256 of {self.key}: got {self.sha256!r}; expected 64 hex digits starting "
                    f"with {prefix}"
                )
            object.__setattr__(self, "sha256", full)
        if urlparse(self.url).scheme not in ("http", "https"):
            raise ValueError(f"url of {self.key}: got {self.url!r}; expected http(s)://...")
        object.__setattr__(self, "mean", tuple(self.mean))
        object.__setattr__(self, "std", tuple(self.std))

    @property
    def key(self) -> str:
        return f"{self.model}-{self.tag}"

    @property
    def file_name(self) -> str:
        """The published file name: where a copy fetched by hand goes in the cache."""
        return Path(urlparse(self.url).path).name

    @property
    def cache_name(self) -> str:
        return f"{self.key}.safetensors"

    def digest_matches(self, digest: str) -> bool:
        digest = digest.lower()
        return digest.startswith(self.sha256_prefix) and self.sha256 in (None, digest)

    @property
    def crop_pct(self) -> float:
        """Crop side / resize side: 224/256 = 0.875 (v1), 224/232 (v2)."""
        return self.input_size / self.resize_size

    def pretrained_cfg(self) -> dict[str, Any]:
        """The evaluation these weights were published with, as a pretrained_cfg dict."""
        names = imagenet_class_names() if self.num_classes == IMAGENET_CLASSES else None
        return make_cfg(
            input_size=(len(self.mean), self.input_size, self.input_size),
            mean=self.mean,
            std=self.std,
            num_classes=self.num_classes,
            crop_pct=self.crop_pct,
            interpolation=self.interpolation,
            label_names=names,
            architecture=self.model,
            tag=self.tag,
            source=self.source or None,
            url=self.url,
            license=self.license,
        )


_CATALOGUE: dict[tuple[str, str], PretrainedWeights] = {}


def register_pretrained(weights: PretrainedWeights, replace_existing: bool = False) -> None:
    """Add weights to the catalogue; (model, tag) pairs are unique unless `replace_existing`."""
    key = (weights.model, weights.tag)
    if key in _CATALOGUE and not replace_existing:
        raise ValueError(f"pretrained weights {weights.model} {weights.tag!r} already registered")
    _CATALOGUE[key] = weights


def list_pretrained(pattern: str = "*") -> list[tuple[str, str]]:
    """(model, tag) pairs with downloadable weights, for model names matching a shell-style
    pattern (`list_bundled` gives the weights that ship inside the package)."""
    return [key for key in _CATALOGUE if fnmatch.fnmatchcase(key[0], pattern)]


def get_pretrained(model: str, tag: str = DEFAULT_TAG) -> PretrainedWeights:
    """The catalogue entry for (model, tag); PretrainedError listing what exists otherwise."""
    if (model, tag) in _CATALOGUE:
        return _CATALOGUE[(model, tag)]
    tags = [t for m, t in _CATALOGUE if m == model]
    if tags:
        raise PretrainedError(
            f"no pretrained weights {tag!r} for {model}; available tags: {', '.join(tags)}"
        )
    models = sorted({m for m, _ in _CATALOGUE})
    raise PretrainedError(
        f"no pretrained weights for model {model!r}; models with weights: {', '.join(models)} "
        f"(or pass a .safetensors/.pth file)"
    )


# -- weights that ship inside the package (no download) ------------------------------------------


@dataclass(frozen=True)
class BundledWeights:
    """Weights trained by this project and installed with it, usable offline.

    The file is a resnetkit checkpoint: its metadata carries the spec, class names, input
    normalisation, test accuracy and the recipe that produced it.
    """

    model: str
    tag: str
    asset: str  # file name in resnetkit/assets
    description: str

    @property
    def name(self) -> str:
        """The name `resnetkit predict --pretrained` takes, e.g. resnet20_fashion_mnist."""
        return f"{self.model}_{self.tag}"

    @property
    def path(self) -> Path:
        return Path(str(resources.files("resnetkit") / "assets" / self.asset))

    def metadata(self) -> dict[str, str]:
        return read_metadata(self.path)

    def spec_fields(self) -> dict[str, int]:
        """in_chans and num_classes of the trained network, the defaults for create_model."""
        spec = json.loads(self.metadata()["spec"])
        return {"in_chans": spec["in_chans"], "num_classes": spec["num_classes"]}

    def pretrained_cfg(self) -> dict[str, Any]:
        """The preprocessing these weights were trained with, from the file's metadata."""
        metadata = self.metadata()
        cfg = pretrained_cfg_from_metadata(metadata, ResNetSpec.parse_json(metadata["spec"]))
        return cfg | {"tag": self.tag, "source": "resnetkit (bundled)", "license": "MIT"}


_BUNDLED: dict[tuple[str, str], BundledWeights] = {
    ("resnet20", "fashion_mnist"): BundledWeights(
        model="resnet20",
        tag="fashion_mnist",
        asset="resnet20_fashion_mnist.safetensors",
        description="ResNet-20 on Fashion-MNIST (28x28 grayscale), "
        "configs/fashion_mnist_resnet20.yaml",
    ),
    ("resnet20", "cifar10"): BundledWeights(
        model="resnet20",
        tag="cifar10",
        asset="resnet20_cifar10.safetensors",
        description="ResNet-20 on CIFAR-10 (32x32 RGB), configs/cifar10_resnet20_fast.yaml",
    ),
    ("resnet9_half", "cifar10"): BundledWeights(
        model="resnet9_half",
        tag="cifar10",
        asset="resnet9_half_cifar10.safetensors",
        description="ResNet-9 at half width on CIFAR-10 (32x32 RGB), "
        "configs/cifar10_resnet9_fast.yaml",
    ),
}


def bundled_weights(model: str, tag: str) -> BundledWeights | None:
    return _BUNDLED.get((model, tag))


def find_bundled(name: str) -> BundledWeights:
    """Bundled weights by name: `resnet20.fashion_mnist` (or the older resnet20_fashion_mnist)."""
    for weights in _BUNDLED.values():
        if name in (weights.name, f"{weights.model}.{weights.tag}"):
            return weights
    names = ", ".join(w.name for w in _BUNDLED.values())
    raise PretrainedError(f"no bundled weights named {name!r}; available: {names}")


def list_bundled(pattern: str = "*") -> list[BundledWeights]:
    return [w for w in _BUNDLED.values() if fnmatch.fnmatchcase(w.model, pattern)]


# -- one name per set of weights: model.tag, as timm writes it -----------------------------------


def weights_names(pattern: str = "*") -> list[str]:
    """Every set of weights as `model.tag` (downloadable and bundled), sorted; `pattern` is
    matched against the model name and against the full name."""
    keys = set(_CATALOGUE) | set(_BUNDLED)
    names = sorted(f"{model}.{tag}" for model, tag in keys)
    return [
        n
        for n in names
        if fnmatch.fnmatchcase(n.split(".", 1)[0], pattern) or fnmatch.fnmatchcase(n, pattern)
    ]


def default_tag(model: str) -> str:
    """The weights `pretrained=True` means: ImageNet's classic weights where they exist,
    else the model's only bundled weights."""
    tags = [tag for m, tag in (*_CATALOGUE, *_BUNDLED) if m == model]
    if not tags:
        raise PretrainedError(
            f"no pretrained weights for model {model!r}; models with weights: "
            + ", ".join(sorted({name.split(".", 1)[0] for name in weights_names()}))
        )
    return DEFAULT_TAG if DEFAULT_TAG in tags else tags[0]


def split_weights_name(name: str) -> tuple[str, str | None]:
    """ "resnet50.imagenet_v2" -> ("resnet50", "imagenet_v2"); a bundled weights' old name
    "resnet20_fashion_mnist" -> ("resnet20", "fashion_mnist"); anything else -> (name, None)."""
    model, dot, tag = name.partition(".")
    if dot and tag and "/" not in name and not name.endswith((".yaml", ".yml", ".json")):
        return model, tag
    for weights in _BUNDLED.values():
        if weights.name == name:
            return weights.model, weights.tag
    return name, None


# torchvision's ImageNet-1K ResNet weights, from the `*_Weights` enums in
# torchvision/models/resnet.py: file name (its hex part is the SHA-256 prefix), acc@1, acc@5.
# Full digests are listed only where independent records of the published file agree.
_TV_URL = "https://download.pytorch.org/models/"
_TV_RECIPES = {
    "v1": "https://github.com/pytorch/vision/tree/main/references/classification#resnet",
    "v1-resnext": "https://github.com/pytorch/vision/tree/main/references/classification#resnext",
    "v1-wide": "https://github.com/pytorch/vision/pull/912#issue-445437439",
    "v2-50": "https://github.com/pytorch/vision/issues/3995#issuecomment-1013906621",
    "v2": "https://github.com/pytorch/vision/issues/3995#new-recipe",
    "v2-fixres": "https://github.com/pytorch/vision/issues/3995#new-recipe-with-fixres",
    "v1-64x4d": "https://github.com/pytorch/vision/pull/5935",
}
# model: (torchvision's enum, parameters as published there; a test checks them against ours)
_TV_MODELS = {
    "resnet18": ("ResNet18_Weights", 11_689_512),
    "resnet34": ("ResNet34_Weights", 21_797_672),
    "resnet50": ("ResNet50_Weights", 25_557_032),
    "resnet101": ("ResNet101_Weights", 44_549_160),
    "resnet152": ("ResNet152_Weights", 60_192_808),
    "wide_resnet50_2": ("Wide_ResNet50_2_Weights", 68_883_240),
    "wide_resnet101_2": ("Wide_ResNet101_2_Weights", 126_886_696),
    "resnext50_32x4d": ("ResNeXt50_32X4D_Weights", 25_028_904),
    "resnext101_32x8d": ("ResNeXt101_32X8D_Weights", 88_791_336),
    "resnext101_64x4d": ("ResNeXt101_64X4D_Weights", 83_455_272),
}
# fmt: off
_TORCHVISION = (
    # model, tag, file, acc@1, acc@5, recipe, full sha256
    ("resnet18", "imagenet", "resnet18-f37072fd.pth", 69.758, 89.078, "v1",
     "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"),
    ("resnet34", "imagenet", "resnet34-b627a593.pth", 73.314, 91.420, "v1",
     "b627a593bcbe140c234610266fe4f8ae95ea42fc881d091c9b6052e6b1d0590f"),
    ("resnet50", "imagenet", "resnet50-0676ba61.pth", 76.130, 92.862, "v1",
     "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a"),
    ("resnet50", "imagenet_v2", "resnet50-11ad3fa6.pth", 80.858, 95.434, "v2-50",
     "11ad3fa62ca79e40addfd354a8ec4b7c75143b3038b8d2a807fbc68deab379ca"),
    ("resnet101", "imagenet", "resnet101-63fe2227.pth", 77.374, 93.546, "v1", None),
    ("resnet101", "imagenet_v2", "resnet101-cd907fc2.pth", 81.886, 95.780, "v2", None),
    ("resnet152", "imagenet", "resnet152-394f9c45.pth", 78.312, 94.046, "v1", None),
    ("resnet152", "imagenet_v2", "resnet152-f82ba261.pth", 82.284, 96.002, "v2", None),
    ("wide_resnet50_2", "imagenet", "wide_resnet50_2-95faca4d.pth", 78.468, 94.086, "v1-wide",
     "95faca4d11227dddf8633dbb5ff6c8a9003c1aa5b8945c73834b8007b10950b8"),
    ("wide_resnet50_2", "imagenet_v2", "wide_resnet50_2-9ba9bcbe.pth", 81.602, 95.758,
     "v2-fixres", None),
    ("wide_resnet101_2", "imagenet", "wide_resnet101_2-32ee1156.pth", 78.848, 94.284,
     "v1-wide", None),
    ("wide_resnet101_2", "imagenet_v2", "wide_resnet101_2-d733dc28.pth", 82.510, 96.020, "v2",
     None),
    ("resnext50_32x4d", "imagenet", "resnext50_32x4d-7cdf4587.pth", 77.618, 93.698,
     "v1-resnext", None),
    ("resnext50_32x4d", "imagenet_v2", "resnext50_32x4d-1a0047aa.pth", 81.198, 95.340, "v2",
     None),
    ("resnext101_32x8d", "imagenet", "resnext101_32x8d-8ba56ff5.pth", 79.312, 94.526,
     "v1-resnext", None),
    ("resnext101_32x8d", "imagenet_v2", "resnext101_32x8d-110c445d.pth", 82.834, 96.228,
     "v2-fixres", None),
    # torchvision's only release of this model was trained with the 2021 recipe.
    ("resnext101_64x4d", "imagenet", "resnext101_64x4d-173b62eb.pth", 83.246, 96.454,
     "v1-64x4d", None),
)
# fmt: on


def _register_torchvision() -> None:
    for model, tag, file, top1, top5, recipe, sha256 in _TORCHVISION:
        new_recipe = recipe.startswith("v2") or recipe == "v1-64x4d"
        version = "IMAGENET1K_V2" if tag == "imagenet_v2" else "IMAGENET1K_V1"
        enum, num_params = _TV_MODELS[model]
        register_pretrained(
            PretrainedWeights(
                model=model,
                tag=tag,
                url=_TV_URL + file,
                sha256_prefix=file.rsplit("-", 1)[1].removesuffix(".pth"),
                sha256=sha256,
                resize_size=232 if new_recipe else 256,
                top1=top1,
                top5=top5,
                num_params=num_params,
                source=f"torchvision {enum}.{version}",
                recipe=_TV_RECIPES[recipe],
            )
        )


_register_torchvision()


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1K class names in label order (torchvision's `_IMAGENET_CATEGORIES`)."""
    text = resources.files("resnetkit").joinpath("assets/imagenet_classes.txt").read_text("utf-8")
    return tuple(line for line in text.splitlines() if line)
