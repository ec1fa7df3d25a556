"""The ``timm`` frozen encoder: any model of timm (https://github.com/huggingface/pytorch-image-models)
run once per image, its pooled feature cached and clustered.

``model`` is a ``timm.list_models()`` name (``resnet50.a1_in1k``, ``vit_small_patch14_dinov2.lvd142m``,
``vit_base_patch16_224.dino``, ...). ``weights`` is ``"hub"`` (the copy an earlier download left
in the local Hugging Face cache, else timm's own download, on a machine online) or a local
``.safetensors``, ``.pth`` or ``.bin`` file. A file is data, never code: it is read as tensors
(weights.py) and handed to timm's loader (``pretrained_cfg_overlay``), which drops a classifier
of another size and converts an original checkpoint as it does for its own files; a file of
another model is refused by its first missing key.

Preprocessing is the model's timm data config (``timm.data.resolve_model_data_config``): the
shorter side resized to ``floor(input / crop_pct)`` with its interpolation (antialiased), the
centre ``input`` square cropped, scaled to [0, 1] and normalised with its mean and std. It runs
on the device on the decoded images (``data.size``, any side: smaller images are upsampled;
grey images are repeated to three channels). The decoded images are square, so timm's crop
modes (centre, squash, border) all come to this one resize and crop; a model whose input is not
square is refused. Decode at the resize size (``floor(input / crop_pct)``, 256 for most 224-px
models) and the images are resized once, as timm's own evaluation transform resizes a file. The
embedding is the pooled feature, ``forward_head(forward_features(x), pre_logits=True)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import logging
import math
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
from mihead_timm.weights import SUFFIXES, digest, hub_cached_file, reach_hub, read_state_dict

__all__ = ["TimmEncoder", "TimmEncoderParams"]

INTERPOLATIONS = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR, "nearest": InterpolationMode.NEAREST}
"""timm's interpolation names that a tensor resize has."""


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


@dataclasses.dataclass(frozen=True)
class _Architecture:
    """What a model's name alone decides: its data config, its pooled feature's length, its
    pretrained tag and hub repository."""

    config: dict[str, Any]
    dim: int
    tag: str
    hub_id: str | None


@functools.cache
def _architecture(name: str) -> _Architecture:
    """Built on the meta device (shapes only: no memory, no weights) and run once there on one
    input-sized image, so that D is the pooled feature's true length and a model that has no
    pooled feature (an encoder-only model of timm) is refused before any weights are read."""
    import timm

    try:
        with torch.device("meta"):
            skeleton: Any = timm.create_model(name, pretrained=False, num_classes=0).eval()
        config = dict(timm.data.resolve_model_data_config(skeleton))  # type: ignore[attr-defined,no-untyped-call]
        pooled = skeleton.forward_head(skeleton.forward_features(torch.empty(1, *config["input_size"], device="meta")), pre_logits=True)
    except Exception as exc:  # noqa: BLE001 - whatever timm raises, the model cannot serve: one line
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise RecipeError(f"backbone.model {name!r}: timm gives no pooled feature for it ({type(exc).__name__}: {first})") from None
    if pooled.ndim != 2:
        raise RecipeError(f"backbone.model {name!r}: its pooled feature has shape {tuple(pooled.shape)}, not [N, D]")
    pretrained: dict[str, Any] = dict(getattr(skeleton, "pretrained_cfg", None) or {})
    tag = f"{pretrained.get('architecture', name)}.{pretrained.get('tag') or ''}".rstrip(".")
    hub_id = pretrained.get("hf_hub_id")
    return _Architecture(config, int(pooled.shape[1]), tag, hub_id if isinstance(hub_id, str) else None)


def _fit_error(path: Path, name: str, exc: BaseException) -> RecipeError:
    """Why the state dict in ``path`` does not load into model ``name``, in one line."""
    text = str(exc)
    missing = re.search(r'Missing key\(s\) in state_dict: "([^"]+)"', text)
    if missing:
        return RecipeError(f"backbone.weights {path} does not fit {name}: no weights for {missing.group(1)!r} (the file is of another model?)")
    mismatch = re.search(r"size mismatch for ([^:]+):", text)
    if mismatch:
        return RecipeError(f"backbone.weights {path} does not fit {name}: size mismatch for {mismatch.group(1)!r} (the file is of another model?)")
    first = (text.strip().splitlines() or [""])[0][:160]
    return RecipeError(f"backbone.weights {path} does not fit {name} ({type(exc).__name__}: {first}); the file is of another model?")


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
    """A timm model as a frozen encoder (see the module).

    The network is kept in a plain list, not as a submodule: its weights are the pretrained
    file's, not the run's, so they must stay out of the model's parameters (nothing trains them,
    no optimiser sees them), its state_dict and its checkpoints (the identity names the file
    instead), and out of the model's ``.to()``: ``prepare`` puts it on the encoding device
    itself.
    """

    name = "timm"

    def __init__(self, params: TimmEncoderParams, image: ImageSpec) -> None:
        super().__init__(params, image)
        _check_name(params.model)
        if params.weights != "hub":
            path = Path(params.weights).expanduser()
            if not path.is_file():
                raise RecipeError(f"backbone.weights {params.weights}: no such file (give a .safetensors, .pth or .bin file, or 'hub')")
            if path.suffix not in SUFFIXES:
                raise RecipeError(f"backbone.weights {path}: not a weights file ({', '.join(SUFFIXES)})")
        self._arch = _architecture(params.model)
        config = self._arch.config
        if config["input_size"][-1] != config["input_size"][-2]:
            raise RecipeError(f"backbone.model {params.model!r}: its input {tuple(config['input_size'][1:])} is not square; the decoded images are")
        if config["interpolation"] not in INTERPOLATIONS:
            raise RecipeError(f"backbone.model {params.model!r}: its interpolation {config['interpolation']!r} is not one of {', '.join(INTERPOLATIONS)}")
        self._network: list[torch.nn.Module] = []

    @property
    def input_side(self) -> int:
        return int(self._arch.config["input_size"][-1])

    @property
    def resize_side(self) -> int:
        """The side timm resizes to before its centre crop: floor(input / crop_pct)."""
        return math.floor(self.input_side / float(self._arch.config.get("crop_pct") or 1.0))

    @property
    def embedding_dim(self) -> int:
        return self._arch.dim

    def _weights_identity(self) -> str:
        if self.params.weights == "hub":
            return f"hub:{self._arch.tag}"
        path = Path(self.params.weights).expanduser()
        try:
            return "sha256:" + digest(path)
        except OSError:
            raise RecipeError(f"backbone.weights {path}: no such file (the run was trained with it: give it back, or the same file elsewhere)") from None

    def identity(self) -> dict[str, str]:
        c = self._arch.config
        return {
            "model": self.params.model,
            "weights": self._weights_identity(),
            "preprocessing": f"resize {self.resize_side} {c['interpolation']}, crop {self.input_side}, mean {tuple(c['mean'])}, std {tuple(c['std'])}",
            "normalize": str(self.params.normalize).lower(),
        }

    def prepare(self, device: torch.device) -> None:
        if self._network:
            return
        if self.params.weights != "hub":
            network = self._load(Path(self.params.weights).expanduser())
        elif (cached := hub_cached_file(self._arch.hub_id)) is not None:
            network = self._load(cached)
        else:
            network = self._download()
        network.eval().requires_grad_(False).to(device)
        if device.type == "cuda":
            network.to(memory_format=torch.channels_last)
        self._network.append(network)

    def _load(self, path: Path) -> torch.nn.Module:
        """The network with the weights in ``path``, loaded by timm from the state dict read here."""
        import timm

        state = read_state_dict(path)
        overlay = {"state_dict": state, "source": ""}  # no source: timm's loader takes the state dict, not its hub
        try:
            with _LoadLog.watching() as log:
                network = timm.create_model(self.params.model, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay)
        except Exception as exc:  # noqa: BLE001 - the file's tensors do not fit the model: one line
            raise _fit_error(path, self.params.model, exc) from None
        if log.missing:
            raise RecipeError(f"backbone.weights {path} does not fit {self.params.model}: no weights for {log.missing[0]!r} (the file is of another model?)")
        return network

    def _download(self) -> torch.nn.Module:
        """The network with timm's pretrained weights, downloaded: at once a one-line error offline."""
        import timm

        try:
            reach_hub()
            return timm.create_model(self.params.model, pretrained=True, num_classes=0)
        except Exception as exc:  # noqa: BLE001 - any failure of the download is the network's: one line
            raise RecipeError(
                f"backbone.weights = 'hub': {self.params.model}'s pretrained weights could not be fetched ({type(exc).__name__}); "
                "offline, download the weights file once elsewhere and give --set backbone.weights=PATH"
            ) from None

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] -> the float batch timm's evaluation transform makes of them."""
        c = self._arch.config
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = TF.resize(x, [self.resize_side], interpolation=INTERPOLATIONS[str(c["interpolation"])], antialias=True)
        x = TF.center_crop(x, [self.input_side, self.input_side]).clamp_(0, 255).div_(255)
        x = TF.normalize(x, list(c["mean"]), list(c["std"]))
        return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if not self._network:
            raise RuntimeError("prepare() loads the network before encode()")
        network: Any = self._network[0]
        features = network.forward_head(network.forward_features(self.preprocess(images)), pre_logits=True).float()
        return torch.nn.functional.normalize(features, dim=1) if self.params.normalize else features


@hookimpl
def register_backbones() -> list[type[Backbone]]:
    return [TimmEncoder]
