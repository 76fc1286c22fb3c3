"""Pretrained weights: the catalogue, a verified download cache, loading into models, and
fine-tuning. Everything is served from 127.0.0.1; nothing reaches the internet."""

import contextlib
import hashlib
import json
import logging
import shutil
import socket
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import resnetkit as rk
from data_fixtures import serve_directory, write_image_folder
from resnetkit import pretrained as pt
from resnetkit.cli import build_parser, main, train_config_from_args
from resnetkit.config import ConfigError, TrainConfig
from resnetkit.data import DatasetInfo
from resnetkit.export import read_export_metadata
from resnetkit.models import registry
from resnetkit.predict import load_pretrained_model
from resnetkit.spec import ResNetSpec
from resnetkit.summary import count_params
from resnetkit.train import build_optimizer, train
from resnetkit.weights import WeightsError, catalogue, read_metadata, read_state_dict
from train_helpers import tiny_config

# A torchvision-shaped miniature: the ImageNet stem and two basic stages, so its state dict
# uses torchvision's names (conv1, bn1, layer1.0.conv1, layer2.0.downsample.0, fc).
TINY_TV = ResNetSpec(stages=[(1, 8, 1), (1, 16, 2)], stem="imagenet", stem_width=8, num_classes=5)
NAME = "tiny_tv"
CLASSIC = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
WITH_V2 = ("resnet50", "resnet101", "resnet152", "wide_resnet50_2", "resnext50_32x4d")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private catalogue, model registry and cache for each test: nothing in ~/.cache."""
    monkeypatch.setattr(catalogue, "_CATALOGUE", dict(catalogue._CATALOGUE))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setenv("RESNETKIT_CACHE", str(tmp_path / "cache-root"))
    registry.register(NAME, TINY_TV, "torchvision-shaped test net", "test")


def write_checkpoint(folder: Path, num_classes: int = 5, seed: int = 0):
    """A torch.save'd state dict named like torchvision's files: <name>-<sha256[:8]>.pth."""
    torch.manual_seed(seed)
    model = rk.ResNet(TINY_TV.replace(num_classes=num_classes))
    with torch.no_grad():  # non-trivial BN statistics, so loading them is visible
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(7)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "checkpoint.tmp"
    torch.save(model.state_dict(), tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = folder / f"{NAME}-{digest[:8]}.pth"
    tmp.rename(path)
    return path, model.state_dict(), digest


@pytest.fixture
def served(tmp_path):
    """The checkpoint on a local HTTP server, registered as (tiny_tv, "imagenet")."""
    path, state, digest = write_checkpoint(tmp_path / "served")
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(serve_directory(path.parent))
        entry = pt.PretrainedWeights(
            NAME, "imagenet", base + path.name, digest[:8], sha256=digest, source="test"
        )
        pt.register_pretrained(entry)
        yield SimpleNamespace(
            entry=entry, state=state, path=path, cache=tmp_path / "cache", stop=stack.close
        )


def assert_same_tensors(actual, expected, skip=()):
    assert set(actual) == set(expected)
    for key, value in expected.items():
        if not key.startswith(skip):
            assert torch.equal(actual[key], value), key


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the catalogue ------------------------------------------------------------------------------


def test_catalogue_has_torchvision_weights_for_the_classic_resnets():
    available = set(pt.list_pretrained())
    for model in (*CLASSIC, "wide_resnet50_2", "resnext50_32x4d"):
        assert (model, "imagenet") in available
    for model in WITH_V2:
        assert (model, "imagenet_v2") in available
    assert ("resnet18", "imagenet_v2") not in available  # torchvision has no V2 of it
    for model, tag in available:
        weights = pt.get_pretrained(model, tag)
        assert weights.url.startswith("https://download.pytorch.org/models/")
        assert weights.file_name == f"{model}-{weights.sha256_prefix}.pth"
        assert weights.license == "BSD-3-Clause" and weights.num_classes == 1000
        assert 0 < weights.top1 < weights.top5 < 100
        assert weights.input_size == 224 and weights.resize_size in (232, 256)
        assert weights.resize_size == (256 if tag == "imagenet" else 232) or model.endswith("64x4d")


def test_catalogue_parameter_counts_equal_our_models():
    for model, tag in pt.list_pretrained():
        with torch.device("meta"):
            net = rk.ResNet(rk.get_spec(model))
        assert count_params(net) == pt.get_pretrained(model, tag).num_params, model


def test_resnet50_v2_matches_torchvision_published_entry():
    weights = pt.get_pretrained("resnet50", "imagenet_v2")
    assert weights.url == "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"
    assert (weights.top1, weights.top5, weights.resize_size) == (80.858, 95.434, 232)
    assert weights.sha256.startswith(weights.sha256_prefix)
    assert pt.get_pretrained("resnet50").top1 == 76.130  # the default tag is V1


def test_imagenet_class_names_are_torchvision_categories():
    names = pt.imagenet_class_names()
    assert len(names) == len(set(names)) == 1000
    assert (names[0], names[134], names[517], names[999]) == (
        "tench",
        "crane bird",
        "crane",
        "toilet tissue",
    )
    # SHA-256 of json.dumps(torchvision's _IMAGENET_CATEGORIES, separators=(",", ":")).
    text = json.dumps(list(names), separators=(",", ":"))
    assert hashlib.sha256(text.encode()).hexdigest().startswith("62fff941ecff3f19de9128c6")


def test_unknown_tag_or_model_lists_what_exists():
    with pytest.raises(pt.PretrainedError, match="available tags: imagenet, imagenet_v2"):
        pt.get_pretrained("resnet50", "imagenet21k")
    with pytest.raises(pt.PretrainedError, match=r"models with weights: .*resnet50"):
        rk.create_model("resnet20", pretrained="imagenet")


def test_cache_dir_is_resnetkit_cache_else_home_cache(tmp_path, monkeypatch):
    assert pt.weights_cache_dir() == tmp_path / "cache-root" / "weights"
    monkeypatch.delenv("RESNETKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pt.weights_cache_dir() == tmp_path / "xdg" / "resnetkit" / "weights"
    assert pt.weights_cache_dir(tmp_path / "mine") == tmp_path / "mine"


# -- download and cache -------------------------------------------------------------------------


def test_download_is_verified_converted_and_then_served_from_the_cache(served):
    path = pt.load_pretrained(NAME, "imagenet", cache_dir=served.cache, progress=False)
    assert path == served.cache / "tiny_tv-imagenet.safetensors"
    assert sorted(p.name for p in served.cache.iterdir()) == [
        "tiny_tv-imagenet.safetensors",
        "tiny_tv-imagenet.safetensors.sha256",
    ]
    assert_same_tensors(read_state_dict(path), served.state)
    served.stop()  # no server any more: a second load must not need one
    assert pt.load_pretrained(NAME, "imagenet", cache_dir=served.cache) == path


def test_a_wrong_file_put_in_the_cache_stops_the_load_and_is_kept(served):
    served.cache.mkdir()
    users = served.cache / served.path.name
    users.write_bytes(b"not the published file")
    with pytest.raises(pt.PretrainedError, match=r"sha256 .*not the published.*Move it away"):
        pt.load_pretrained(NAME, cache_dir=served.cache, progress=False)
    assert users.read_bytes() == b"not the published file"
    assert sorted(p.name for p in served.cache.iterdir()) == [users.name]  # nothing else made


def test_a_published_file_put_in_the_cache_is_converted_and_kept(served):
    served.stop()  # no network: the copy by hand must be enough
    served.cache.mkdir()
    users = served.cache / served.path.name
    shutil.copy(served.path, users)
    before = users.read_bytes()
    path = pt.load_pretrained(NAME, cache_dir=served.cache, progress=False)
    assert_same_tensors(read_state_dict(path), served.state)
    assert users.read_bytes() == before


@pytest.mark.parametrize("bad", ["prefix", "full digest"])
def test_a_file_whose_hash_differs_is_refused_and_nothing_is_cached(served, bad):
    if bad == "prefix":
        wrong = replace(served.entry, sha256_prefix="deadbeef", sha256=None)
    else:
        wrong = replace(served.entry, sha256=served.entry.sha256_prefix + "0" * 56)
    pt.register_pretrained(wrong, replace_existing=True)
    with pytest.raises(pt.PretrainedError, match=r"sha256 .*refusing it"):
        pt.load_pretrained(NAME, cache_dir=served.cache, progress=False)
    assert not [p for p in served.cache.rglob("*") if p.is_file()]


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "not safetensors"])
def test_a_corrupt_cached_file_is_fetched_again(served, damage, caplog):
    path = pt.load_pretrained(NAME, cache_dir=served.cache, progress=False)
    data = bytearray(path.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data = bytearray(b"not a safetensors file")
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="resnetkit.weights"):
        assert pt.load_pretrained(NAME, cache_dir=served.cache, progress=False) == path
    assert "fetching them again" in caplog.text
    assert_same_tensors(read_state_dict(path), served.state)


def test_offline_error_names_the_url_and_where_to_put_the_file(tmp_path):
    path, state, digest = write_checkpoint(tmp_path / "elsewhere")
    url = f"http://127.0.0.1:{closed_port()}/{path.name}"
    pt.register_pretrained(pt.PretrainedWeights(NAME, "imagenet", url, digest[:8]))
    cache = tmp_path / "cache"
    with pytest.raises(pt.PretrainedError) as info:
        pt.load_pretrained(NAME, cache_dir=cache, progress=False)
    message = str(info.value)
    assert url in message and str(cache / path.name) in message
    # A file put there by hand is verified and used without any network.
    shutil.copy(path, cache / path.name)
    assert_same_tensors(read_state_dict(pt.load_pretrained(NAME, cache_dir=cache)), state)


def test_a_verified_copy_in_torch_hubs_cache_is_used_instead_of_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    hub = tmp_path / "torch-home" / "hub" / "checkpoints"
    path, state, digest = write_checkpoint(hub)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in hub.iterdir()}
    url = f"http://127.0.0.1:{closed_port()}/{path.name}"  # a download would fail
    pt.register_pretrained(pt.PretrainedWeights(NAME, "imagenet", url, digest[:8]))
    cached = pt.load_pretrained(NAME, cache_dir=tmp_path / "cache", progress=False)
    assert cached == tmp_path / "cache" / "tiny_tv-imagenet.safetensors"
    assert_same_tensors(read_state_dict(cached), state)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in hub.iterdir()} == before


def test_a_copy_in_torch_hubs_cache_with_another_hash_is_left_alone_and_downloaded(
    served, monkeypatch, tmp_path
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    stranger = tmp_path / "torch-home" / "hub" / "checkpoints" / served.path.name
    stranger.parent.mkdir(parents=True)
    stranger.write_bytes(b"someone else's file")
    path = pt.load_pretrained(NAME, cache_dir=served.cache, progress=False)
    assert_same_tensors(read_state_dict(path), served.state)
    assert stranger.read_bytes() == b"someone else's file"


def test_offline_and_nowhere_cached_is_one_cli_line_naming_the_url_and_both_caches(
    tmp_path, capsys
):
    path, _, digest = write_checkpoint(tmp_path / "elsewhere")
    url = f"http://127.0.0.1:{closed_port()}/{path.name}"
    pt.register_pretrained(pt.PretrainedWeights(NAME, "imagenet", url, digest[:8]))
    argv = ["train", "--model", NAME, "--pretrained", "imagenet", "--data", "synthetic", "-q"]
    assert main([*argv, "--out-dir", str(tmp_path / "runs"), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and url in err
    assert str(pt.weights_cache_dir() / path.name) in err
    assert str(pt.torch_hub_file(pt.get_pretrained(NAME))) in err


# -- create_model(..., pretrained=...) ----------------------------------------------------------


def test_create_model_loads_torchvision_names_strictly_into_the_default_cache(served, tmp_path):
    model = rk.create_model(NAME, pretrained="imagenet")
    assert_same_tensors(model.state_dict(), served.state)
    assert (tmp_path / "cache-root" / "weights" / "tiny_tv-imagenet.safetensors").is_file()


def test_catalogue_weights_bring_their_pretrained_cfg_fitted_to_the_model(served):
    cfg = rk.create_model(NAME, pretrained="imagenet").pretrained_cfg
    assert (cfg["tag"], cfg["url"], cfg["source"]) == ("imagenet", served.entry.url, "test")
    assert cfg["input_size"] == (3, 224, 224) and cfg["crop_pct"] == 0.875
    assert cfg["num_classes"] == 5 and cfg["label_names"] is None  # not ImageNet's classes
    cached = pt.weights_cache_dir() / "tiny_tv-imagenet.safetensors"
    assert json.loads(read_metadata(cached)["pretrained_cfg"])["tag"] == "imagenet"
    grey = rk.create_model(NAME, pretrained="imagenet", in_chans=1).pretrained_cfg
    assert grey["input_size"] == (1, 224, 224)
    assert grey["mean"] == pytest.approx((sum(pt.IMAGENET_MEAN) / 3,))


def test_a_weights_file_is_loaded_strictly(tmp_path):
    path, state, _ = write_checkpoint(tmp_path / "files")
    assert_same_tensors(rk.create_model(NAME, pretrained=path).state_dict(), state)
    missing = {k: v for k, v in state.items() if k != "layer1.0.conv1.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"missing keys layer1\.0\.conv1\.weight"):
        rk.create_model(NAME, pretrained=str(tmp_path / "missing.pth"))
    torch.save(dict(state, extra=torch.zeros(1)), tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match="unexpected keys extra"):
        rk.create_model(NAME, pretrained=str(tmp_path / "extra.pth"))


def test_another_number_of_classes_gets_a_new_classifier_and_the_same_backbone(served, caplog):
    with caplog.at_level(logging.INFO, logger="resnetkit.weights"):
        model = rk.create_model(NAME, pretrained="imagenet", num_classes=3)
    assert model.fc.weight.shape == (3, 16)
    assert_same_tensors(
        {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")},
        {k: v for k, v in served.state.items() if not k.startswith("fc.")},
    )
    assert "has 5 classes, the model 3 classes: the classifier is re-initialised" in caplog.text


def test_one_input_channel_gets_the_sum_of_the_rgb_filters(served, caplog):
    with caplog.at_level(logging.INFO, logger="resnetkit.weights"):
        model = rk.create_model(NAME, pretrained="imagenet", in_chans=1)
    rgb = served.state["conv1.weight"]
    assert model.conv1.weight.shape == (8, 1, 7, 7)
    torch.testing.assert_close(model.conv1.weight.data, rgb.sum(dim=1, keepdim=True))
    assert_same_tensors(model.state_dict(), {**served.state, "conv1.weight": model.conv1.weight})
    assert "from 3 to 1 input channels by summing its RGB filters" in caplog.text


def test_more_input_channels_repeat_the_rgb_filters_scaled(served):
    model = rk.create_model(NAME, pretrained="imagenet", in_chans=4)
    rgb = served.state["conv1.weight"]
    expected = torch.cat([rgb, rgb[:, :1]], dim=1) * (3 / 4)
    torch.testing.assert_close(model.conv1.weight.data, expected)


# -- fine-tuning --------------------------------------------------------------------------------


def test_freeze_backbone_trains_the_classifier_only_and_keeps_batchnorm_statistics(tmp_path):
    folder = write_image_folder(tmp_path / "images", {"a": 12, "b": 12}, size=(20, 20))
    weights, state, _ = write_checkpoint(tmp_path / "weights", num_classes=2)
    spec = tmp_path / "tiny_tv.yaml"
    TINY_TV.to_yaml(spec)
    cfg = TrainConfig(
        model=str(spec),
        data=f"folder:{folder}",
        image_size=16,
        val_fraction=0.25,
        epochs=2,
        batch_size=6,
        num_workers=0,
        lr=0.1,
        out_dir=str(tmp_path / "runs"),
        name="frozen",
        threads=1,
        tensorboard=False,
        pretrained=str(weights),
        freeze_backbone=True,
    )
    result = train(cfg)
    trained = read_state_dict(result.run_dir / "checkpoints" / "last.safetensors")
    assert_same_tensors(trained, state, skip="fc.")  # includes running_mean/var, num_batches
    assert not torch.equal(trained["fc.weight"], state["fc.weight"])
    assert not torch.equal(trained["fc.bias"], state["fc.bias"])


def test_frozen_batchnorm_runs_in_eval_mode_even_after_train():
    model = pt.freeze_backbone(rk.create_model(NAME))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 32, 32)
    out = model(x)
    assert model.training and not model.bn1.training and not model.layer2[0].bn2.training
    assert_same_tensors(model.state_dict(), before)  # no running statistic moved
    torch.testing.assert_close(out, model.eval()(x))  # the same function as in eval mode


def test_backbone_lr_scale_gives_the_backbone_its_own_learning_rate():
    model = rk.create_model(NAME, num_classes=3)
    cfg = TrainConfig(lr=0.2, backbone_lr_scale=0.1, weight_decay=5e-4)
    optimizer = build_optimizer(model, cfg)
    seen = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            assert id(param) not in seen
            seen[id(param)] = (group["lr"], group["weight_decay"])
    assert len(seen) == len(list(model.parameters()))
    head = {id(p) for p in model.fc.parameters()}
    for name, param in model.named_parameters():
        lr, decay = seen[id(param)]
        assert lr == pytest.approx(0.2 if id(param) in head else 0.02), name
        assert decay == (5e-4 if param.ndim > 1 else 0.0), name
    assert sorted({round(g["lr"], 6) for g in optimizer.param_groups}) == [0.02, 0.2]


def test_the_training_loop_scales_each_groups_scheduled_rate(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1, max_steps=2, schedule="constant", backbone_lr_scale=0.5)
    result = train(cfg)
    (state_file,) = sorted((result.run_dir / "checkpoints").glob("state-*.pt"))
    state = torch.load(state_file, weights_only=True)
    lrs = [(g["lr_scale"], g["lr"]) for g in state["optimizer"]["param_groups"]]
    assert lrs == [(0.5, 0.025), (0.5, 0.025), (1.0, 0.05), (1.0, 0.05)]


def test_pretrained_normalisation_follows_the_weights():
    assert pt.pretrained_normalisation(TrainConfig(model="resnet50")) is None
    norm = pt.pretrained_normalisation(TrainConfig(model="resnet50", pretrained="imagenet_v2"))
    assert (norm.mean, norm.std, norm.input_size) == (pt.IMAGENET_MEAN, pt.IMAGENET_STD, 224)
    grey = DatasetInfo("grey", ("a", "b"), 1, (28, 28), (0.3,), (0.3,))
    adapted = norm.apply(grey)
    assert adapted.mean == pytest.approx((sum(pt.IMAGENET_MEAN) / 3,))
    assert adapted.std == pytest.approx((sum(pt.IMAGENET_STD) / 3,))


def test_fine_tuning_from_bundled_weights_feeds_the_data_their_normalisation():
    norm = pt.pretrained_normalisation(TrainConfig(model="resnet20", pretrained="fashion_mnist"))
    cfg = pt.find_bundled("resnet20.fashion_mnist").pretrained_cfg()
    assert (norm.mean, norm.std, norm.input_size) == (cfg["mean"], cfg["std"], 28)


def test_a_run_fine_tuned_from_bundled_weights_records_their_normalisation(tmp_path):
    changes = dict(model="resnet20", pretrained="fashion_mnist", epochs=1, max_steps=1)
    result = train(tiny_config(tmp_path, **changes))
    stored = json.loads(read_metadata(result.run_dir / "checkpoints" / "last.safetensors")["mean"])
    bundled = pt.find_bundled("resnet20.fashion_mnist").pretrained_cfg()["mean"]
    assert stored == pytest.approx(list(bundled) * 3)  # grey statistics for the RGB data


def test_the_data_and_the_model_get_the_normalisation_from_the_same_cfg(served, tmp_path):
    model = rk.create_model(NAME, pretrained="imagenet", in_chans=1)
    norm = pt.pretrained_normalisation(TrainConfig(model=NAME, pretrained="imagenet"))
    grey = norm.apply(DatasetInfo("grey", ("a", "b"), 1, (28, 28), (0.3,), (0.3,)))
    assert (grey.mean, grey.std) == (model.pretrained_cfg["mean"], model.pretrained_cfg["std"])
    # A file that records no preprocessing: the model's default cfg, for both.
    bare_file = tmp_path / "bare.pth"
    torch.save(served.state, bare_file)
    bare = pt.pretrained_normalisation(TrainConfig(model=NAME, pretrained=str(bare_file)))
    assert (bare.mean, bare.std) == (pt.IMAGENET_MEAN, pt.IMAGENET_STD)
    assert rk.create_model(NAME, pretrained=bare_file).pretrained_cfg["mean"] == bare.mean


def test_config_validates_the_fine_tuning_fields():
    with pytest.raises(ConfigError, match=r"'backbone_lr_scale': got 1\.5; expected 0\.0 to 1\.0"):
        TrainConfig(backbone_lr_scale=1.5)
    with pytest.raises(ConfigError, match="'pretrained'"):
        TrainConfig(pretrained=" ")


# -- command line -------------------------------------------------------------------------------


def test_cli_train_flags_set_the_fine_tuning_fields():
    argv = ["train", "--pretrained", "imagenet", "--freeze-backbone", "--backbone-lr-scale", "0.1"]
    cfg = train_config_from_args(build_parser().parse_args(argv))
    assert (cfg.pretrained, cfg.freeze_backbone, cfg.backbone_lr_scale) == ("imagenet", True, 0.1)


def test_cli_lists_the_pretrained_catalogue(capsys):
    assert main(["models", "--pretrained", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "imagenet_v2" in out and "80.858" in out and "95.434" in out
    assert "25,557,032" in out and "BSD-3-Clause" in out and "224/232" in out


def test_cli_unknown_tag_is_one_line_and_creates_no_run_folder(tmp_path, capsys):
    argv = ["train", "--model", "resnet50", "--pretrained", "imagenet21k", "--data", "synthetic"]
    argv += ["--out-dir", str(tmp_path / "runs"), "--name", "x", "--threads", "1", "-q"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "available tags: imagenet, imagenet_v2" in err and "Traceback" not in err
    assert not (tmp_path / "runs" / "x").exists()


# -- named weights in predict, eval, export -------------------------------------------------------


def offline_entry(tmp_path, tag="imagenet", **fields):
    """(tiny_tv, tag) with a URL nothing answers: the published file is put in the cache by
    hand, as the offline message asks, so nothing touches the network."""
    path, state, digest = write_checkpoint(tmp_path / "elsewhere")
    url = f"http://127.0.0.1:{closed_port()}/{path.name}"
    entry = pt.PretrainedWeights(NAME, tag, url, digest[:8], sha256=digest, **fields)
    pt.register_pretrained(entry, replace_existing=True)
    pt.weights_cache_dir().mkdir(parents=True, exist_ok=True)
    shutil.copy(path, pt.weights_cache_dir() / path.name)
    return entry, state


def test_every_spelling_of_a_weights_name_loads_the_same_weights(tmp_path):
    _, state = offline_entry(tmp_path)
    for name in ("tiny_tv.imagenet", "tiny_tv"):  # a model alone: its default weights
        loaded = load_pretrained_model(name)
        assert_same_tensors(loaded.model.state_dict(), state)
        assert loaded.metadata == {"pretrained": "tiny_tv.imagenet"}
        assert loaded.image_size == (224, 224) and not loaded.model.training
    bundled = [
        load_pretrained_model(n) for n in ("resnet20_fashion_mnist", "resnet20.fashion_mnist")
    ]
    assert all(b.metadata["dataset"] == "fashion-mnist" for b in bundled)  # its own checkpoint
    assert (
        bundled[0].class_names
        == bundled[1].class_names
        == load_pretrained_model("resnet20").class_names
    )


def test_predict_pretrained_takes_catalogue_weights_with_their_published_transform(
    tmp_path, capsys
):
    entry, _ = offline_entry(tmp_path, tag="imagenet_v2", resize_size=232)
    image = tmp_path / "photo.png"
    Image.effect_noise((300, 260), 60).convert("RGB").save(image)
    assert main(["predict", "--pretrained", "tiny_tv.imagenet_v2", str(image), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)[0]
    transform = rk.create_transform(entry.pretrained_cfg())
    assert transform.resize_size == (232, 232) and transform.input_size == (3, 224, 224)
    model = rk.create_model("tiny_tv.imagenet_v2").eval()
    with torch.no_grad():
        probs = model(transform.read(image)[None]).softmax(1)[0]
    best = probs.topk(5)
    assert printed["indices"] == best.indices.tolist()
    assert printed["probabilities"] == pytest.approx(best.values.tolist(), abs=1e-6)


def test_eval_pretrained_takes_catalogue_weights_and_asks_for_the_data(tmp_path, capsys):
    offline_entry(tmp_path)
    root = tmp_path / "photos"
    counts = {name: 2 for name in "abcde"}  # tiny_tv has 5 classes
    write_image_folder(root / "train", counts, size=(40, 36))
    write_image_folder(root / "test", counts, size=(40, 36))
    assert main(["eval", "--pretrained", "tiny_tv.imagenet", "--num-workers", "0"]) == 2
    assert "pass --data" in capsys.readouterr().err
    argv = ["eval", "--pretrained", "tiny_tv.imagenet", "--data", f"folder:{root}"]
    assert main([*argv, "--num-workers", "0"]) == 0
    assert "test: 10 images" in capsys.readouterr().out
    checkpoint = tmp_path / "m.safetensors"
    rk.save_weights(rk.ResNet(TINY_TV), checkpoint, {"spec": TINY_TV.to_json()})
    assert main([*argv, str(checkpoint)]) == 2
    assert "not both" in capsys.readouterr().err


def test_export_pretrained_takes_catalogue_weights_and_carries_their_cfg(tmp_path, capsys):
    offline_entry(tmp_path)
    out = tmp_path / "tiny.pt"
    argv = ["export", "--pretrained", "tiny_tv.imagenet", "--format", "torchscript", "-o", str(out)]
    assert main(argv) == 0
    cfg = json.loads(read_export_metadata(out)["pretrained_cfg"])
    assert (cfg["tag"], cfg["crop_pct"], cfg["input_size"]) == ("imagenet", 0.875, [3, 224, 224])
    assert main(argv) == 2  # an existing file, refused before anything is loaded
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["predict", "eval", "export"])
def test_offline_named_weights_are_one_line_naming_the_url_and_the_cache(tmp_path, capsys, command):
    published = pt.get_pretrained("resnet50", "imagenet_v2")
    url = f"http://127.0.0.1:{closed_port()}/{published.file_name}"
    pt.register_pretrained(replace(published, url=url), replace_existing=True)
    image = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(image)
    argv = {
        "predict": ["predict", "--pretrained", "resnet50.imagenet_v2", str(image)],
        "eval": ["eval", "--pretrained", "resnet50.imagenet_v2", "--data", "synthetic"],
        "export": ["export", "--pretrained", "resnet50.imagenet_v2", "--format", "onnx"],
    }[command]
    if command == "export":
        argv += ["-o", str(tmp_path / "r50.onnx")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert url in err and str(pt.weights_cache_dir() / published.file_name) in err
