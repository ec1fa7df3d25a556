"""dhog_push: value against explicit joint tables in numpy, gradient stopping, bf16, and where
its gradient goes in DHOG's networks under each ``reach``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mihead.build import ObjectiveTerm, build_model, model_shape
from mihead.contracts import ImageSpec, ModelOutputs, ObjectiveContext
from mihead.errors import RecipeError
from mihead.gradients import backward
from mihead.mi import joint_table, mutual_information
from mihead.model import MultiHeadModel
from mihead.plugins import load_registry
from mihead.recipe import load_recipe
from mihead_dhog_push import DHOGPush, DHOGPushParams, push


def _probs(h: int, v: int, b: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(h, v, b, k, generator=g).mul(2).softmax(-1)


def _mi_numpy(zi: np.ndarray, zj: np.ndarray) -> float:
    """MI of the explicit joint table P = (1/B) sum_b zi_b zj_b^T, by the definition."""
    p = np.einsum("bk,bl->kl", zi, zj) / len(zi)
    pi, pj = p.sum(1), p.sum(0)
    total = 0.0
    for a in range(p.shape[0]):
        for c in range(p.shape[1]):
            total += p[a, c] * np.log(p[a, c] / (pi[a] * pj[c]))
    return total


def _push_numpy(probs: np.ndarray) -> float:
    """Eq. 4 with heads counted from 1: sum_i (1/i) sum_{j<i} MI(c_i, c_j), mean over views."""
    h, v = probs.shape[:2]
    per_view = [
        sum(sum(_mi_numpy(probs[i, w], probs[j, w]) for j in range(i)) / (i + 1) for i in range(h))
        for w in range(v)
    ]
    return float(np.mean(per_view))


def _objective() -> DHOGPush:
    return DHOGPush(DHOGPushParams(), ObjectiveContext(heads=4, views=3, clusters=5, overclusters=0, feature_channels={}))


def test_value_matches_numpy_joint_tables() -> None:
    probs = _probs(4, 3, 64, 5)
    got = _objective()(ModelOutputs(probs=probs, over_probs=None, features={}))
    assert got.item() == pytest.approx(_push_numpy(probs.double().numpy()), rel=1e-5)


def test_identical_heads_give_their_entropy_and_independent_heads_zero() -> None:
    hard = torch.nn.functional.one_hot(torch.arange(64) % 4, 4).float()
    same = hard[None, None].expand(3, 1, 64, 4)
    # two copies of a uniform 4-way labelling: MI = log 4 per pair; heads 2, 3 have 1, 2 pairs
    assert push(same).item() == pytest.approx(np.log(4) * (1 / 2 + 2 / 3), rel=1e-5)
    other = torch.nn.functional.one_hot(torch.arange(64) // 16, 4).float()  # independent of hard
    indep = torch.stack([hard, other])[:, None]
    assert push(indep).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_flows_only_into_later_heads_from_earlier_ones() -> None:
    probs = _probs(4, 2, 32, 5).requires_grad_()
    over = _probs(4, 2, 32, 7).requires_grad_()
    _objective()(ModelOutputs(probs=probs, over_probs=over, features={})).backward()
    assert probs.grad is not None
    assert torch.count_nonzero(probs.grad[0]) == 0  # the first head is never pushed
    assert over.grad is None  # overclustering heads take no part
    # head i's gradient is that of (1/(i+1)) sum_{j<i} MI(z_i, z_j) with z_j held fixed
    for i in range(1, 4):
        zi = probs[i].detach().clone().requires_grad_()
        direct = sum(mutual_information(joint_table(zi, probs[j].detach())) for j in range(i)) / (i + 1)
        direct.mean().backward()
        torch.testing.assert_close(probs.grad[i], zi.grad)


def test_head_weights_get_push_gradient_only_from_earlier_heads() -> None:
    torch.manual_seed(0)
    features = torch.randn(2, 16, 8)  # [V, B, C]
    layers = torch.nn.ModuleList(torch.nn.Linear(8, 4) for _ in range(3))
    push(torch.stack([layer(features).softmax(-1) for layer in layers])).backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in layers[0].parameters())
    assert all(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in layers[2].parameters())


def test_finite_under_bf16_autocast() -> None:
    logits = torch.randn(8, 4, 32, 10, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probs = (logits.to(torch.bfloat16) * 3).softmax(-1)
        value = push(probs)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()


def test_comparisons_scale_divides_by_the_number_of_earlier_heads() -> None:
    """scale = "comparisons": head i's summed MI over i - 1 (its mean over earlier heads)
    instead of eq. 4's i, against the numpy joint tables."""
    probs = _probs(4, 2, 64, 5, seed=3)
    pn = probs.double().numpy()
    expected = np.mean(
        [sum(sum(_mi_numpy(pn[i, w], pn[j, w]) for j in range(i)) / max(i, 1) for i in range(4)) for w in range(2)]
    )
    params = DHOGPushParams(scale="comparisons")
    ctx = ObjectiveContext(heads=4, views=2, clusters=5, overclusters=0, feature_channels={})
    got = DHOGPush(params, ctx)(ModelOutputs(probs=probs, over_probs=None, features={}))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert got.item() > push(probs).item()  # dividing by i - 1 < i


# --- reach: where the push's gradient goes in a real model ----------------------------------
RECIPES = Path(__file__).resolve().parents[2] / "recipes"
# DHOG's two networks, small: smallcnn in DHOG's shape (digits) and dhog_resnet18 at width 1/8
NETWORKS = {
    "smallcnn": (RECIPES / "dhog_digits.toml", ImageSpec(channels=1, size=8), 10, []),
    "dhog_resnet18": (RECIPES / "dhog_cifar10.toml", ImageSpec(channels=3, size=32), 10, ["backbone.width=0.125", "augment.size=16"]),
}


def _model(network: str, reach: str) -> tuple[MultiHeadModel, list[ObjectiveTerm], torch.Tensor]:
    """The recipe's model, objectives (push at ``reach``) and a batch of its views."""
    path, image, clusters, sets = NETWORKS[network]
    recipe = load_recipe(path, load_registry(), [*sets, f"objective.dhog_push.reach={reach}"])
    augmenter = recipe.augment.cls(recipe.augment.params, image)
    torch.manual_seed(0)
    shape = model_shape(recipe, augmenter, torch.device("cpu"), classes=clusters)
    assert shape is not None
    model, objectives = build_model(recipe, augmenter, shape, torch.device("cpu"))
    size = augmenter.output.size
    return model, objectives, torch.rand(augmenter.num_views, 24, image.channels, size, size)


def _gradients(network: str, reach: str, terms: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Every model parameter's gradient (zeros where none) from one step of the ``terms``
    named, through the engine's backward pass (mihead.gradients.backward)."""
    model, objectives, views = _model(network, reach)
    outputs = model(views)
    chosen = [t for t in objectives if t.name in terms]
    backward({t.name: t.module(outputs) for t in chosen}, chosen, model)
    return {n: torch.zeros_like(p) if p.grad is None else p.grad for n, p in model.named_parameters()}


def _own_names(network: str) -> list[set[str]]:
    """Per main head, the names of the parameters that belong to it (head_parameters)."""
    model = _model(network, "head_specific")[0]
    names = {id(p): n for n, p in model.named_parameters()}
    return [{names[id(p)] for p in own} for own in model.head_parameters()]


def _norm(grads: dict[str, torch.Tensor], names: set[str]) -> float:
    return float(sum(grads[n].double().square().sum() for n in names))


@pytest.mark.parametrize("network", NETWORKS)
def test_head_specific_push_reaches_only_the_heads_own_weights(network: str) -> None:
    own = _own_names(network)
    grads = _gradients(network, "head_specific", ("dhog_push",))
    shared = set(grads) - set().union(*own)
    assert shared and all(torch.count_nonzero(grads[n]) == 0 for n in shared)  # exactly zero
    assert _norm(grads, own[0]) == 0  # the first head is never pushed
    for i, names in enumerate(own[1:], 1):
        assert _norm(grads, names) > 0, f"head {i} gets no push gradient"
    copies = [names - {n for n in names if n.startswith("heads.")} for names in own]
    assert sum(bool(c) for c in copies) == 5  # the five final-block copies are their heads' own
    assert all(_norm(grads, c) > 0 for c in copies if c)
    # whole_path, for contrast: the push reaches the shared blocks through the later heads
    assert _norm(_gradients(network, "whole_path", ("dhog_push",)), shared) > 0


@pytest.mark.parametrize("network", NETWORKS)
def test_the_pull_trains_everything_and_the_push_adds_only_to_head_weights(network: str) -> None:
    own = set().union(*_own_names(network))
    pull = _gradients(network, "head_specific", ("iic",))
    push_only = _gradients(network, "head_specific", ("dhog_push",))
    both = _gradients(network, "head_specific", ("iic", "dhog_push"))
    shared = set(pull) - own
    assert _norm(pull, shared) > 0
    for name in shared:  # the pull's gradient, untouched by the push
        assert torch.equal(both[name], pull[name]), name
    for name in own:  # the pull's gradient plus the (weighted) push's
        torch.testing.assert_close(both[name], pull[name] + push_only[name], rtol=1e-5, atol=1e-9)


def test_reach_is_refused_with_a_backbone_that_declares_no_owned_parameters(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        '[data]\nname = "digits"\n[augment]\nname = "small_affine"\nsize = 16\n[backbone]\nname = "dccm_cnn"\n'
        '[head]\nname = "mlp"\n[[objective]]\nname = "iic"\n[[objective]]\nname = "dhog_push"\nreach = "head_specific"\n'
    )
    with pytest.raises(RecipeError, match=r"\[objective.1\] 'dhog_push' asks for a head-specific gradient, but backbone 'dccm_cnn' does not"):
        load_recipe(recipe, load_registry())
    assert load_recipe(recipe, load_registry(), ["objective.dhog_push.reach=whole_path"])  # the other reading needs nothing
