"""The verified download cache of pretrained weights: a file is downloaded once, checked
against the SHA-256 its name carries (the full digest where it is known), converted to
safetensors in the cache and read from there afterwards; torch.hub's copy is used when it is
there and matches."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from ..core.cache import cache_root
from ..core.fileio import remove_verified, sha256_file, verified_path, verify_file
from ..data.base import DataError
from ..data.download import download_file
from .catalogue import DEFAULT_TAG, PretrainedError, PretrainedWeights, get_pretrained
from .io import WeightsError, read_metadata, read_state_dict

log = logging.getLogger(__name__)

CACHE_FORMAT = "resnetkit-pretrained-v1"


def weights_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where pretrained weights are kept: `cache_dir` if given, else `$RESNETKIT_CACHE/weights`,
    else `~/.cache/resnetkit/weights` (honouring `$XDG_CACHE_HOME`)."""
    if cache_dir is not None:
        return Path(cache_dir)
    return cache_root() / "weights"


def load_pretrained(
    model_name: str,
    tag: str = DEFAULT_TAG,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """The path of the cached `.safetensors` file for (model, tag), downloading it first if
    needed. A cached file that is unreadable or fails its checksum is fetched again (the
    `.safetensors` files are resnetkit's own; a published `.pth` a user put in the cache is
    converted and left where it is, and one whose hash differs stops the load).

    Before downloading, torch.hub's checkpoint folder is searched (`torch_hub_file`): a copy
    that torchvision or torch.hub fetched earlier is verified, converted into this cache and
    used; torch's folder is only read, never written.
    """
    weights = get_pretrained(model_name, tag)
    cache = weights_cache_dir(cache_dir)
    target = cache / weights.cache_name
    if target.is_file():
        problem = _cached_problem(target, weights)
        if problem is None:
            return target
        log.warning("cached weights %s: %s; fetching them again", target, problem)
        remove_verified(target)
    cache.mkdir(parents=True, exist_ok=True)
    if _convert_from_torch_hub(weights, target):
        return target
    manual = cache / weights.file_name  # where the offline message asks for the published file
    if manual.is_file():
        _convert_manual_copy(manual, target, weights)
        return target
    downloaded, digest = _download(weights, manual, progress)
    try:
        _convert(downloaded, digest, target, weights)
    finally:
        downloaded.unlink(missing_ok=True)
    return target


def torch_hub_file(weights: PretrainedWeights) -> Path:
    """Where torch.hub and torchvision keep the published file: `torch.hub.get_dir()`
    (`$TORCH_HOME/hub` unless set otherwise) / checkpoints / <file name from the URL>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.file_name


def _convert_from_torch_hub(weights: PretrainedWeights, target: Path) -> bool:
    """Convert torch.hub's copy into `target` if it is there and its hash matches."""
    hub_file = torch_hub_file(weights)
    if not hub_file.is_file():
        return False
    digest = sha256_file(hub_file)
    if not weights.digest_matches(digest):
        log.warning(
            "%s in torch.hub's cache does not match sha256 %s...; not using it",
            hub_file,
            weights.sha256_prefix,
        )
        return False
    log.info("using %s from torch.hub's cache (read, not moved)", hub_file)
    _convert(hub_file, digest, target, weights)
    return True


def _convert_manual_copy(manual: Path, target: Path, weights: PretrainedWeights) -> None:
    """Convert the published file a user put in the cache by hand. It is theirs: it is read,
    never deleted or replaced, and one that is not the published file stops the load."""
    digest = sha256_file(manual)
    mismatch = _digest_mismatch(digest, weights)
    if mismatch:
        raise PretrainedError(
            f"{manual} has {mismatch}: it is not the published {weights.model} "
            f"{weights.tag!r} file (an interrupted download?). Move it away or replace it with "
            f"the file from {weights.url}, then run again"
        )
    _convert(manual, digest, target, weights)
    log.info("converted %s into %s; the .pth is no longer read and may be deleted", manual, target)


def _digest_mismatch(digest: str, weights: PretrainedWeights) -> str | None:
    """'sha256 X, expected Y' where `digest` is not the published file's; None where it is."""
    if weights.digest_matches(digest):
        return None
    return f"sha256 {digest}, expected {weights.sha256 or weights.sha256_prefix + '...'}"


def _download(weights: PretrainedWeights, manual: Path, progress: bool) -> tuple[Path, str]:
    """Fetch into a temporary file of its own (safe with several processes) and return it,
    with its SHA-256, once that matches; nothing under a final name is written before that."""

    fd, tmp_name = tempfile.mkstemp(dir=manual.parent, prefix=f".{manual.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        log.info("downloading %s weights %r from %s", weights.model, weights.tag, weights.url)
        try:
            download_file(weights.url, tmp, progress=progress)
        except DataError as exc:
            raise PretrainedError(
                f"cannot download the {weights.model} {weights.tag!r} weights from "
                f"{weights.url} ({_reason(exc)}). Offline? Fetch that file elsewhere; it is "
                f"checked against sha256 {weights.sha256_prefix}... and converted on first use "
                f"when placed in torch.hub's cache at {torch_hub_file(weights)} or at: {manual}"
            ) from None
        digest = sha256_file(tmp)
        mismatch = _digest_mismatch(digest, weights)
        if mismatch:
            raise PretrainedError(
                f"the file downloaded from {weights.url} has {mismatch}; refusing it (nothing "
                f"was cached). The download was corrupted or the file changed upstream"
            )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest


def _reason(exc: Exception) -> str:
    cause = exc.__cause__
    if cause is None:
        return str(exc)
    code = getattr(cause, "code", None)
    if code is not None:
        return f"HTTP {code} {getattr(cause, 'reason', '')}".strip()
    return str(getattr(cause, "reason", cause))


def _convert(raw: Path, raw_sha256: str, target: Path, weights: PretrainedWeights) -> None:
    """Write the verified state dict as safetensors, with its provenance (the source file's
    SHA-256, as the caller checked it: not hashed again) and a checksum."""
    from safetensors.torch import save_file

    try:
        state = read_state_dict(raw)
    except WeightsError as exc:
        raise PretrainedError(f"{raw} passed its checksum but cannot be read: {exc}") from None
    state = {k: v.detach().contiguous() for k, v in state.items()}
    metadata = {
        "format": CACHE_FORMAT,
        "model": weights.model,
        "tag": weights.tag,
        "url": weights.url,
        "source_sha256": raw_sha256,
        "mean": json.dumps(list(weights.mean)),
        "std": json.dumps(list(weights.std)),
        "image_size": json.dumps([weights.input_size, weights.input_size]),
        "pretrained_cfg": json.dumps(weights.pretrained_cfg()),
    }
    with verified_path(target) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def _cached_problem(path: Path, weights: PretrainedWeights) -> str | None:
    """Why a cached file cannot be used (corrupt, unreadable, from other weights), or None."""
    problem = verify_file(path)
    if problem is not None:
        return problem
    try:
        metadata = read_metadata(path)
    except WeightsError:
        return "unreadable"
    if not weights.digest_matches(metadata.get("source_sha256", "")):
        return f"from another file than {weights.url}"
    return None
