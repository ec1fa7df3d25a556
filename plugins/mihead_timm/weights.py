"""Where a timm encoder's weights come from: a local file read as data, the local Hugging Face
cache, or the hub, and the digest that names a file in a run's identity.

A weights file is read here, never by timm: timm before 1.0.26 reads a ``.pth`` with
``torch.load(weights_only=False)``, which runs whatever the file's pickle asks for. Here
``.safetensors`` is read as tensors and anything else with ``torch.load(weights_only=True)``,
which refuses a pickle that would build any object but tensors and plain containers. The
encoder hands the state dict to timm (``pretrained_cfg_overlay=dict(state_dict=...)``), whose
loader then drops a classifier of another size and converts original checkpoints as it does for
its own files.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import urllib.error
import urllib.request
from pathlib import Path

import torch

from mihead.errors import RecipeError

__all__ = ["SUFFIXES", "digest", "hub_cached_file", "read_state_dict", "reach_hub"]

SUFFIXES = (".safetensors", ".pth", ".bin", ".pt")
"""The weights files a recipe may name."""

NESTED = ("state_dict_ema", "model_ema", "state_dict", "model")
"""Keys of a training checkpoint under which the model's state dict lies, in the order timm's
own loader prefers them (an EMA copy first)."""

HUB = "https://huggingface.co"
"""Where timm's weights are downloaded from."""

HUB_FILES = ("model.safetensors", "pytorch_model.bin")
"""The files of a timm model's hub repository that timm loads, in the order it tries them."""


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in the weights file ``path`` (a training checkpoint's nested one, with a
    ``module.`` prefix of data-parallel training removed); a one-line RecipeError for a file
    that holds code to run, is cut short, or holds no tensors by name."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: object = load_file(str(path), device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):  # not an object refused but bytes that are no pickle (torch names the refused global)
            raise RecipeError(f"backbone.weights {path}: cannot be read (not a torch or safetensors file); truncated or not a weights file?") from None
        raise RecipeError(
            f"backbone.weights {path}: refused, the file holds Python objects that loading would build or run "
            "(only tensors are read, with torch.load(weights_only=True)); save the model's state_dict alone, or as .safetensors"
        ) from None
    except Exception as exc:  # noqa: BLE001 - every other failure to read is the file's: one line
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise RecipeError(f"backbone.weights {path}: cannot be read ({type(exc).__name__}: {first}); truncated or not a weights file?") from None
    if isinstance(loaded, dict):
        nested = next((loaded[key] for key in NESTED if isinstance(loaded.get(key), dict)), None)
        loaded = nested if nested is not None else loaded
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        raise RecipeError(f"backbone.weights {path}: holds no state dict (tensors by parameter name); save model.state_dict()")
    return {key.removeprefix("module."): value for key, value in loaded.items()}


@functools.cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            sha.update(block)
    return sha.hexdigest()


def digest(path: Path) -> str:
    """sha256 of the file's bytes, computed once per (path, size, modification time) in a
    process: a large file is not hashed again by every identity() call, and a file written
    again is."""
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def hub_cached_file(hub_id: str | None) -> Path | None:
    """The weights file of the hub repository ``hub_id`` ("owner/name[@revision]") that timm
    would load, when an earlier download left it in the local Hugging Face cache; else None."""
    if not hub_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = hub_id.partition("@")
    for filename in HUB_FILES:
        found = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(found, str):
            return Path(found)
    return None


def reach_hub(timeout: float = 5.0) -> None:
    """Returns when the hub answers within ``timeout`` seconds (through the environment's
    proxies); raises OSError at once otherwise, rather than after the download's retries (the
    better part of a minute), or when HF_HUB_OFFLINE says not to try."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise OSError("HF_HUB_OFFLINE is set")
    try:
        urllib.request.urlopen(urllib.request.Request(HUB, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered
