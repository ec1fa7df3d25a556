"""The ``timm`` frozen encoder with weights the tests save themselves (no download): the loaded
model's embeddings equal the saved model's, a classifier of another size is dropped, the
preprocessing is timm's own evaluation transform, the identity follows the weights file, and
every bad input (an unknown name, a model without a pooled feature or with a non-square input, a
missing, truncated, foreign or unsafe file, the hub offline) is one line."""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

import mihead_timm.weights
from mihead.contracts import ImageSpec
from mihead.errors import RecipeError
from mihead.testing import check_backbone
from mihead_timm import TimmEncoder, TimmEncoderParams

VIT, RESNET = "test_vit.r160_in1k", "test_resnet.r160_in1k"
SPEC = ImageSpec(3, 40)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def saved(tmp_path: Path, name: str, suffix: str, **kwargs: int) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".safetensors":
        save_file(model.state_dict(), str(path))
    else:
        torch.save(model.state_dict(), path)
    return model, path


def encoder(model: str, weights: Path | str, image: ImageSpec = SPEC) -> TimmEncoder:
    return TimmEncoder(TimmEncoderParams(model=model, weights=str(weights)), image)


def images(n: int = 3, side: int = 40, channels: int = 3) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def assert_embeds_as(enc: TimmEncoder, model: torch.nn.Module) -> None:
    """The prepared encoder's embeddings of two images are ``model``'s own pooled, normalised features."""
    enc.prepare(torch.device("cpu"))
    x = images(2)
    with torch.inference_mode():
        pooled = model.forward_head(model.forward_features(enc.preprocess(x)), pre_logits=True)  # type: ignore[operator]
        torch.testing.assert_close(enc.encode(x), torch.nn.functional.normalize(pooled, dim=1))


@pytest.mark.parametrize("name", [VIT, RESNET])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_the_loaded_encoder_embeds_as_the_saved_model(tmp_path: Path, name: str, suffix: str) -> None:
    model, path = saved(tmp_path, name, suffix)
    enc = encoder(name, path)
    enc.prepare(torch.device("cpu"))
    x = images()
    with torch.inference_mode():
        got = enc.encode(x)
        pooled = model.forward_head(model.forward_features(enc.preprocess(x)), pre_logits=True)
    assert got.shape == (3, enc.embedding_dim)
    torch.testing.assert_close(got, torch.nn.functional.normalize(pooled, dim=1))
    assert torch.allclose(got.norm(dim=1), torch.ones(3))


def test_a_classifier_of_another_size_is_dropped(tmp_path: Path) -> None:
    model, path = saved(tmp_path, RESNET, ".safetensors", num_classes=7)
    enc = encoder(RESNET, path)
    assert_embeds_as(enc, model)


def test_a_training_checkpoint_s_nested_state_dict_loads(tmp_path: Path) -> None:
    model, _ = saved(tmp_path, RESNET, ".pth")
    path = tmp_path / "checkpoint.pth"
    state = {f"module.{k}": v for k, v in model.state_dict().items()}  # as data-parallel training saves it
    torch.save({"epoch": 3, "model": state, "optimizer": {"lr": torch.tensor(0.1)}}, path)
    enc = encoder(RESNET, path)
    assert_embeds_as(enc, model)


def test_the_embedding_is_the_pre_logits_feature_not_num_features(tmp_path: Path) -> None:
    model, path = saved(tmp_path, "test_mambaout", ".safetensors")
    assert model.num_features != model.head_hidden_size
    enc = encoder("test_mambaout", path)
    enc.prepare(torch.device("cpu"))
    with torch.inference_mode():
        assert enc.embedding_dim == model.head_hidden_size and enc.encode(images(2)).shape == (2, enc.embedding_dim)


def test_preprocessing_is_timm_s_evaluation_transform(tmp_path: Path) -> None:
    model, path = saved(tmp_path, VIT, ".safetensors")
    enc = encoder(VIT, path, ImageSpec(3, 200))
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    ramp = np.linspace(0, 255, 200)[None, :, None] * np.ones((200, 1, 3)) * np.linspace(0.3, 1, 200)[:, None, None]
    picture = ramp.astype(np.uint8)
    expected = transform(Image.fromarray(picture))
    ours = enc.preprocess(torch.from_numpy(picture).permute(2, 0, 1)[None])[0]
    assert ours.shape == expected.shape == (3, 160, 160)
    assert float((ours - expected).abs().mean()) < 0.01  # PIL rounds its resize to uint8; ours stays float


def test_grey_images_are_repeated_to_three_channels(tmp_path: Path) -> None:
    _, path = saved(tmp_path, RESNET, ".safetensors")
    enc = encoder(RESNET, path, ImageSpec(1, 40))
    enc.prepare(torch.device("cpu"))
    grey = images(2, channels=1)
    torch.testing.assert_close(enc.encode(grey), enc.encode(grey.expand(-1, 3, -1, -1)))


def test_decoded_images_smaller_than_the_input_are_upsampled(tmp_path: Path) -> None:
    _, path = saved(tmp_path, RESNET, ".safetensors")
    enc = encoder(RESNET, path, ImageSpec(3, 8))
    assert enc.preprocess(images(2, side=8)).shape == (2, 3, 160, 160)
    check_backbone(TimmEncoder, TimmEncoderParams(model=RESNET, weights=str(path)), image=ImageSpec(1, 8))


def test_the_identity_follows_the_weights_file(tmp_path: Path) -> None:
    _, path = saved(tmp_path, RESNET, ".safetensors")
    first = encoder(RESNET, path).identity()
    assert first["model"] == RESNET and first["weights"].startswith("sha256:")
    assert encoder(RESNET, path).identity() == first
    torch.manual_seed(5)
    save_file(timm.create_model(RESNET, pretrained=False).state_dict(), str(path))
    os.utime(path, ns=(1, 1))
    assert encoder(RESNET, path).identity()["weights"] != first["weights"]
    assert encoder(RESNET, "hub").identity()["weights"] == "hub:test_resnet.r160_in1k"


def test_the_network_is_not_part_of_the_model_s_state(tmp_path: Path) -> None:
    _, path = saved(tmp_path, RESNET, ".safetensors")
    enc = encoder(RESNET, path)
    enc.prepare(torch.device("cpu"))
    assert list(enc.parameters()) == [] and list(enc.state_dict()) == ["_extra_state"]


def test_contract(tmp_path: Path) -> None:
    _, path = saved(tmp_path, RESNET, ".safetensors")
    check_backbone(TimmEncoder, TimmEncoderParams(model=RESNET, weights=str(path)))


def one_line(exc: pytest.ExceptionInfo[RecipeError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_an_unknown_model_gets_the_closest_names() -> None:
    with pytest.raises(RecipeError) as exc:
        encoder("resnet5O.a1_in1k", "hub")
    assert "timm has no such model" in one_line(exc) and "did you mean resnet50.a1_in1k" in one_line(exc)


def test_a_model_without_a_pooled_feature_is_refused() -> None:
    with pytest.raises(RecipeError) as exc:
        encoder("mobilenetv5_300m_enc", "hub")
    assert "timm gives no pooled feature for it" in one_line(exc)


def test_a_model_with_a_non_square_input_is_refused() -> None:
    with pytest.raises(RecipeError) as exc:
        encoder("vit_base_patch16_sapiens2.fb", "hub")
    assert "is not square" in one_line(exc)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as exc:
        encoder(RESNET, tmp_path / "absent.safetensors")
    assert "no such file" in one_line(exc)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_truncated_file_is_one_line(tmp_path: Path, suffix: str) -> None:
    _, path = saved(tmp_path, RESNET, suffix)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    enc = encoder(RESNET, path)
    with pytest.raises(RecipeError) as exc:
        enc.prepare(torch.device("cpu"))
    assert str(path) in one_line(exc) and "truncated" in one_line(exc) and "refused" not in one_line(exc)


@pytest.mark.parametrize("content", ["empty", "random", "safetensors"])
def test_a_file_of_other_bytes_is_not_called_unsafe(tmp_path: Path, content: str) -> None:
    path = tmp_path / "other.pth"
    if content == "safetensors":
        path.write_bytes(saved(tmp_path, RESNET, ".safetensors")[1].read_bytes())
    else:
        path.write_bytes(b"" if content == "empty" else bytes(range(256)) * 4)
    with pytest.raises(RecipeError) as exc:
        encoder(RESNET, path).prepare(torch.device("cpu"))
    assert f"{path}: cannot be read" in one_line(exc) and "truncated or not a weights file" in one_line(exc)


@pytest.mark.parametrize(("theirs", "ours", "first"), [(VIT, RESNET, "no weights for 'conv1"), (RESNET, VIT, "no weights for 'cls_token'"), (RESNET, "test_convnext", "KeyError")])
def test_another_model_s_file_is_refused(tmp_path: Path, theirs: str, ours: str, first: str) -> None:
    _, path = saved(tmp_path, theirs, ".safetensors")
    enc = encoder(ours, path)
    with pytest.raises(RecipeError) as exc:
        enc.prepare(torch.device("cpu"))
    assert f"{path} does not fit {ours}" in one_line(exc) and first in one_line(exc)


def test_a_file_of_no_state_dict_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "numbers.pth"
    torch.save({"epoch": 3, "best": 0.5}, path)
    with pytest.raises(RecipeError) as exc:
        encoder(RESNET, path).prepare(torch.device("cpu"))
    assert f"{path}: holds no state dict" in one_line(exc)


class _RunsCode:
    """An object whose unpickling would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_a_file_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": _RunsCode(marker)}, path)
    enc = encoder(RESNET, path)
    with pytest.raises(RecipeError) as exc:
        enc.prepare(torch.device("cpu"))
    assert "refused" in one_line(exc) and "weights_only=True" in one_line(exc)
    assert not marker.exists()


@pytest.mark.parametrize("offline_mode", [False, True])
def test_the_hub_offline_says_which_key_takes_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline_mode: bool) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline_mode)
    monkeypatch.setattr(mihead_timm.weights, "HUB", "http://127.0.0.1:9")  # without offline mode: a hub that refuses at once
    enc = encoder(RESNET, "hub")
    with pytest.raises(RecipeError) as exc:
        enc.prepare(torch.device("cpu"))
    assert "backbone.weights = 'hub'" in one_line(exc) and "--set backbone.weights=PATH" in one_line(exc)


def test_the_hub_s_weights_in_the_local_cache_load_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = saved(tmp_path, RESNET, ".safetensors")
    repo = tmp_path / "hub" / f"models--timm--{RESNET}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    save_file(model.state_dict(), str(repo / "snapshots" / ("0" * 40) / "model.safetensors"))  # as an earlier download leaves it
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    enc = encoder(RESNET, "hub")
    assert_embeds_as(enc, model)
    assert enc.identity()["weights"] == f"hub:{RESNET}"
