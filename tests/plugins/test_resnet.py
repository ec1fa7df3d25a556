"""dhog_resnet18: timm's ResNet-18 with shared blocks 1-3 and parallel final blocks."""

from __future__ import annotations

import copy

import pytest
import torch
from timm.models.resnet import BasicBlock

from mihead.contracts import ImageSpec
from mihead_dhog_push import push
from mihead_resnet import DHOGResNet18, DHOGResNetParams, resolve_stem


@pytest.fixture(scope="module")
def cifar_backbone() -> DHOGResNet18:
    torch.manual_seed(0)
    return DHOGResNet18(DHOGResNetParams(), ImageSpec(channels=3, size=20)).eval()


def test_eight_attachment_points_in_hierarchy_order(cifar_backbone: DHOGResNet18) -> None:
    out = cifar_backbone(torch.rand(2, 3, 20, 20))
    assert cifar_backbone.attach_channels == [64, 128, 256, 512, 512, 512, 512, 512]
    # CIFAR stem (stride 1, no max-pool): 20 -> 20, 10, 5, 3
    assert [tuple(a.shape[1:]) for a in out.attach] == [
        (64, 20, 20), (128, 10, 10), (256, 5, 5), *[(512, 3, 3)] * 5
    ]
    assert all(isinstance(m, BasicBlock) for m in cifar_backbone.finals[0])


def test_final_copies_are_independent(cifar_backbone: DHOGResNet18) -> None:
    first = [f[0].conv1.weight for f in cifar_backbone.finals]
    for a in range(5):
        for b in range(a + 1, 5):
            assert first[a].data_ptr() != first[b].data_ptr()
            assert not torch.allclose(first[a], first[b])
    out = cifar_backbone(torch.rand(2, 3, 20, 20))
    assert not torch.allclose(out.attach[3], out.attach[4])


def test_channels_last_gives_the_same_features(cifar_backbone: DHOGResNet18) -> None:
    x = torch.rand(2, 3, 20, 20)
    plain = cifar_backbone(x).attach
    model = copy.deepcopy(cifar_backbone).to(memory_format=torch.channels_last)
    last = model(x.contiguous(memory_format=torch.channels_last)).attach
    for a, b in zip(plain, last, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_width_two_stl_crop_and_no_early_heads() -> None:
    model = DHOGResNet18(DHOGResNetParams(width=2.0, final_copies=1, attach_early=False), ImageSpec(3, 64))
    assert model.stem_kind == "stride2"
    out = model(torch.rand(2, 3, 64, 64))
    assert model.attach_channels == [1024]
    assert [tuple(a.shape[1:]) for a in out.attach] == [(1024, 4, 4)]


def test_stems() -> None:
    assert [resolve_stem("auto", s) for s in (20, 32, 64, 96, 224)] == ["cifar", "cifar", "stride2", "stride2", "imagenet"]
    model = DHOGResNet18(DHOGResNetParams(stem="imagenet", final_copies=1), ImageSpec(1, 96))
    out = model(torch.rand(2, 1, 96, 96))
    assert [a.shape[-1] for a in out.attach] == [24, 12, 6, 3]


def test_push_gradient_reaches_later_paths_not_the_first_head() -> None:
    """The documented decision: z_j (j < i) is detached, z_i's path (trunk included) is not."""
    backbone = DHOGResNet18(DHOGResNetParams(final_copies=1), ImageSpec(3, 20)).train()
    heads = torch.nn.ModuleList(torch.nn.Linear(c, 6) for c in backbone.attach_channels)
    out = backbone(torch.rand(8, 3, 20, 20))
    probs = torch.stack([h(a.mean((2, 3))).softmax(-1) for h, a in zip(heads, out.attach, strict=True)])
    push(probs[:, None]).backward()
    assert heads[0].weight.grad is None or torch.count_nonzero(heads[0].weight.grad) == 0
    assert torch.count_nonzero(heads[3].weight.grad) > 0
    # (timm zero-initialises each residual branch's last BN, so test the stem and that BN)
    assert torch.count_nonzero(backbone.stem[0].weight.grad) > 0
    assert torch.count_nonzero(backbone.finals[0][-1].bn2.weight.grad) > 0
