"""The ``timm`` frozen encoder: any model of timm (https://github.com/huggingface/pytorch-image-models)
run once per image, its pooled feature cached and clustered.

``model`` is a ``timm.list_models()`` name (``resnet50.a1_in1k``, ``vit_small_patch14_dinov2.lvd142m``,
``vit_base_patch16_224.dino``, ...); ``weights`` is ``"hub"`` (timm's own download, on a machine
online) or a local ``.safetensors``, ``.pth`` or ``.bin`` file, loaded by timm as its documented
``pretrained_cfg_overlay=dict(file=...)`` does, so that a classifier of another size in the file is
dropped as timm drops it. A weights file is data, never code: timm reads ``.safetensors`` as
tensors and any other file with ``torch.load(weights_only=True)``, which refuses a pickle that
would build other objects (checked by this plugin's tests with such a file).

Preprocessing is the model's timm data config (``timm.data.resolve_model_data_config``): the
shorter side resized to ``floor(input / crop_pct)`` with its interpolation (antialiased), the
centre ``input`` square cropped, scaled to [0, 1] and normalised with its mean and std. It runs
on the device on the decoded images (``data.size``; grey images are repeated to three
channels): decode at the resize size (``floor(input / crop_pct)``, 256 for most 224-px models) and
the images are resized once, as timm's own evaluation transform resizes a file. The embedding is
the pooled feature, ``forward_head(forward_features(x), pre_logits=True)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import hashlib
import logging
import math
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from mihead import hookimpl
from mihead.contracts import Backbone, FrozenEncoder, FrozenEncoderParams, ImageSpec, param
from mihead.errors import RecipeError

__all__ = ["TimmEncoder", "TimmEncoderParams"]

SUFFIXES = (".safetensors", ".pth", ".bin", ".pt")


@dataclasses.dataclass(frozen=True)
class TimmEncoderParams(FrozenEncoderParams):
    model: str = param("resnet18.a1_in1k", "the timm model (a timm.list_models() name, with its pretrained tag)")
    weights: str = param("hub", "'hub' (timm's download, online) or a local .safetensors/.pth/.bin file of the model's weights")


@functools.cache
def _names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models(pretrained=True)) + tuple(timm.list_models())


def _check_name(name: str) -> None:
    """A one-line RecipeError, with the closest names, when timm has no model ``name``."""
    import timm

    architecture = name.split(".", 1)[0]
    if name in _names() or timm.is_model(architecture) and "." not in name:
        return
    close = difflib.get_close_matches(name, _names(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; timm.list_models() lists them"
    raise RecipeError(f"backbone.model {name!r}: timm has no such model{hint}")


@functools.cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a weights file, computed once per (path, size, modification time)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            sha.update(block)
    return sha.hexdigest()


HUB = "https://huggingface.co"
"""Where timm's weights are downloaded from."""


def _reach_hub(timeout: float = 5.0) -> None:
    """Returns when the hub answers within ``timeout`` seconds (through the environment's
    proxies); raises OSError at once otherwise, rather than after the download's retries (the
    better part of a minute)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(HUB, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered


def _interpolation(name: str) -> InterpolationMode:
    return {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR, "nearest": InterpolationMode.NEAREST}.get(name, InterpolationMode.BICUBIC)


def _load_error(path: Path, name: str, exc: BaseException) -> RecipeError:
    """What went wrong loading ``path`` into model ``name``, in one line."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text or "Unsupported global" in text:
        return RecipeError(
            f"backbone.weights {path}: refused, the file holds Python objects that loading would run "
            "(only tensors are read, with torch.load(weights_only=True)); save the model's state_dict alone, or as .safetensors"
        )
    missing = re.search(r'Missing key\(s\) in state_dict: "([^"]+)"', text)
    if missing:
        return RecipeError(f"backbone.weights {path} does not fit {name}: no weights for {missing.group(1)!r} (the file is of another model?)")
    mismatch = re.search(r"size mismatch for ([^:]+): (.*)", text)
    if mismatch:
        return RecipeError(f"backbone.weights {path} does not fit {name}: size mismatch for {mismatch.group(1)!r}")
    first = text.strip().splitlines()[0] if text.strip() else ""
    return RecipeError(f"backbone.weights {path}: cannot be read as {name}'s weights ({type(exc).__name__}: {first[:160]}); truncated or not a weights file?")


class _LoadLog(logging.Handler):
    """The keys timm's loader reports missing: it loads non-strictly once the classifier is
    dropped, so a file of another model would otherwise leave the network randomly initialised."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.missing: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(r"Missing keys \((.*?)\) discovered", record.getMessage())
        if found:
            self.missing += [key.strip() for key in found.group(1).split(",")]

    @classmethod
    @contextlib.contextmanager
    def watching(cls) -> Iterator[_LoadLog]:
        logger = logging.getLogger("timm.models._builder")
        handler, level = cls(), logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            yield handler
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)


class TimmEncoder(FrozenEncoder[TimmEncoderParams]):
    """A timm model as a frozen encoder (see the module)."""

    name = "timm"

    def __init__(self, params: TimmEncoderParams, image: ImageSpec) -> None:
        import timm

        super().__init__(params, image)
        _check_name(params.model)
        if params.weights != "hub":
            path = Path(params.weights).expanduser()
            if not path.is_file():
                raise RecipeError(f"backbone.weights {params.weights}: no such file (give a .safetensors, .pth or .bin file, or 'hub')")
            if path.suffix not in SUFFIXES:
                raise RecipeError(f"backbone.weights {path}: not a weights file ({', '.join(SUFFIXES)})")
        with torch.device("meta"):  # the architecture's shapes and config, no memory, no weights
            skeleton = timm.create_model(params.model, pretrained=False, num_classes=0)
        self._dim = int(getattr(skeleton, "head_hidden_size", None) or getattr(skeleton, "num_features"))  # noqa: B009
        self._config: dict[str, Any] = dict(timm.data.resolve_model_data_config(skeleton))  # type: ignore[attr-defined,no-untyped-call]
        pretrained: dict[str, Any] = dict(getattr(skeleton, "pretrained_cfg", None) or {})
        self._tag = f"{pretrained.get('architecture', params.model)}.{pretrained.get('tag') or ''}".rstrip(".")
        # The network lives outside the module tree: its weights are the pretrained file's, not
        # the run's, so they stay out of the model's parameters, state_dict and checkpoints.
        self._network: list[Any] = []
        side = self.input_side
        if side > 16 * max(image.size, 1):
            raise RecipeError(f"backbone {params.model}: its {side} px input is more than 16 times the {image.size} px decoded images; decode larger (data.size)")

    @property
    def input_side(self) -> int:
        return int(self._config["input_size"][-1])

    @property
    def resize_side(self) -> int:
        """The side timm resizes to before its centre crop: floor(input / crop_pct)."""
        return math.floor(self.input_side / float(self._config.get("crop_pct") or 1.0))

    @property
    def embedding_dim(self) -> int:
        return self._dim

    def _weights_identity(self) -> str:
        if self.params.weights == "hub":
            return f"hub:{self._tag}"
        path = Path(self.params.weights).expanduser()
        try:
            stat = path.stat()
        except OSError:
            raise RecipeError(f"backbone.weights {path}: no such file (the run was trained with it: give it back, or the same file elsewhere)") from None
        return "sha256:" + _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)

    def identity(self) -> dict[str, str]:
        c = self._config
        return {
            "model": self.params.model,
            "weights": self._weights_identity(),
            "preprocessing": f"resize {self.resize_side} {c['interpolation']}, crop {self.input_side}, mean {tuple(c['mean'])}, std {tuple(c['std'])}",
            "normalize": str(self.params.normalize).lower(),
        }

    def prepare(self, device: torch.device) -> None:
        if self._network:
            return
        import timm

        p = self.params
        try:
            if p.weights == "hub":
                _reach_hub()
                network = timm.create_model(p.model, pretrained=True, num_classes=0)
            else:
                path = Path(p.weights).expanduser()
                with _LoadLog.watching() as log:
                    network = timm.create_model(p.model, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(path), "source": ""})
                if log.missing:
                    raise RecipeError(f"backbone.weights {path} does not fit {p.model}: no weights for {log.missing[0]!r} (the file is of another model?)")
        except RecipeError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the load is the user's file or network: one line
            if p.weights == "hub":
                raise RecipeError(
                    f"backbone.weights = 'hub': {p.model}'s pretrained weights could not be fetched ({type(exc).__name__}); "
                    "offline, download the weights file once elsewhere and give --set backbone.weights=PATH"
                ) from None
            raise _load_error(Path(p.weights), p.model, exc) from None
        network.eval().requires_grad_(False).to(device)
        if device.type == "cuda":
            network.to(memory_format=torch.channels_last)
        self._network.append(network)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] -> the float batch timm's evaluation transform makes of them."""
        c = self._config
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = TF.resize(x, [self.resize_side], interpolation=_interpolation(str(c["interpolation"])), antialias=True)
        x = TF.center_crop(x, [self.input_side, self.input_side]).clamp_(0, 255).div_(255)
        x = TF.normalize(x, list(c["mean"]), list(c["std"]))
        return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if not self._network:
            raise RuntimeError("prepare() loads the network before encode()")
        network = self._network[0]
        features = network.forward_head(network.forward_features(self.preprocess(images)), pre_logits=True).float()
        return torch.nn.functional.normalize(features, dim=1) if self.params.normalize else features


@hookimpl
def register_backbones() -> list[type[Backbone]]:
    return [TimmEncoder]
