"""dccm_triplet_mi: pair selection (Table 5, V1), the JSD MI (eq. 13, 14) against numpy, and
the discriminator learning to separate joint from product pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mihead.contracts import ModelOutputs, ObjectiveContext
from mihead.errors import PluginError, RecipeError
from mihead_dccm_triplet_mi import DCCMTripletMI, DCCMTripletMIParams, select_pairs

LOG2 = math.log(2)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny tensors: threads only contend on the shared cores


def context(shallow: int, deep: int, heads: int = 1) -> ObjectiveContext:
    return ObjectiveContext(heads=heads, views=2, clusters=4, overclusters=0, feature_channels={"shallow": shallow, "deep": deep})


def one_hot(labels: list[int], k: int = 4) -> torch.Tensor:
    return torch.eye(k)[labels]


def test_pairs_nearest_is_an_edge_and_negatives_are_non_neighbours() -> None:
    z = one_hot([0, 0, 1, 1, 2])
    torch.manual_seed(0)
    for _ in range(20):
        pairs = select_pairs(z, 0.95)
        assert pairs.nearest[:4].tolist() == [1, 0, 3, 2]
        assert pairs.nearest_valid.tolist() == [True, True, True, True, False]  # 4 has no neighbour
        cluster = torch.tensor([0, 0, 1, 1, 2])
        assert torch.all(cluster[pairs.negative] != cluster)
        assert pairs.negative_valid.all()


def test_pairs_in_a_fully_linked_batch_have_no_negative() -> None:
    pairs = select_pairs(one_hot([2, 2, 2]), 0.95)
    assert not pairs.negative_valid.any()
    assert pairs.nearest_valid.all()


def numpy_triplet_mi(obj: DCCMTripletMI, probs: torch.Tensor, shallow: np.ndarray, deep: np.ndarray) -> float:
    """-MI^(JSD) with the pairs the objective draws, T evaluated by hand in float64."""
    disc = obj.discriminator
    w1 = np.concatenate([disc.shallow_in.weight.detach().double().numpy()[:, :, 0, 0], disc.deep_in.weight.detach().double().numpy()], 1)
    b1 = disc.shallow_in.bias.detach().double().numpy()
    w2 = disc.rest[1].weight.detach().double().numpy()[:, :, 0, 0]
    b2 = disc.rest[1].bias.detach().double().numpy()
    w3 = disc.rest[3].weight.detach().double().numpy()[:, :, 0, 0]
    b3 = disc.rest[3].bias.detach().double().numpy()
    sp = lambda x: np.log1p(np.exp(x))  # noqa: E731

    def t(i: int, j: int, v: int) -> np.ndarray:  # scores of (d_i, s_j) at every location
        s = shallow[v, j].reshape(shallow.shape[2], -1).T  # [HW, Cs]
        x = np.concatenate([s, np.repeat(deep[v, i][None], len(s), 0)], 1)
        h = np.maximum(x @ w1.T + b1, 0)
        h = np.maximum(h @ w2.T + b2, 0)
        return (h @ w3.T + b3)[:, 0]

    torch.manual_seed(123)
    pairs = select_pairs(probs[obj.params.head], obj.params.thres1)
    views, b = deep.shape[:2]
    mis = []
    for v in range(views):
        joint = [(-sp(-t(i, i, v))).mean() for i in range(b)]
        joint += [(-sp(-t(i, int(pairs.nearest[v, i]), v))).mean() for i in range(b) if pairs.nearest_valid[v, i]]
        product = [sp(t(i, int(pairs.negative[v, i]), v)).mean() for i in range(b) if pairs.negative_valid[v, i]]
        mis.append(np.mean(joint) - (np.mean(product) if product else 0.0))
    return -float(np.mean(mis))


def test_matches_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    labels = [0, 0, 1, 2, 2, 3]
    z = one_hot(labels) * 0.9 + 0.025  # confident, rows sum to one
    probs = torch.stack([z, z[[1, 0, 2, 3, 5, 4]]])[None]  # [H=1, V=2, B=6, K=4]
    shallow = torch.randn(2, 6, 3, 2, 2, generator=g)
    deep = torch.randn(2, 6, 5, generator=g)
    obj = DCCMTripletMI(DCCMTripletMIParams(hidden=7), context(3, 5))
    torch.manual_seed(123)
    loss = obj(ModelOutputs(probs, None, {"shallow": shallow, "deep": deep}))
    expected = numpy_triplet_mi(obj, probs, shallow.double().numpy(), deep.double().numpy())
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def train_discriminator(shallow: torch.Tensor, deep: torch.Tensor, steps: int = 80) -> tuple[float, float]:
    """First and last loss of the discriminator alone trained on fixed features of a batch of
    4 distinct pseudo-classes (joint = own pairs, product = all others)."""
    torch.manual_seed(0)
    probs = one_hot([0, 1, 2, 3]).expand(1, 2, 4, 4)
    obj = DCCMTripletMI(DCCMTripletMIParams(hidden=32), context(shallow.shape[2], deep.shape[2]))
    opt = torch.optim.Adam(obj.parameters(), lr=1e-2)
    out = ModelOutputs(probs, None, {"shallow": shallow, "deep": deep})
    losses = []
    for _ in range(steps):
        loss = obj(out)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


def test_discriminator_learns_separable_pairs() -> None:
    ids = torch.eye(4)
    shallow = ids[None, :, :, None, None].expand(2, 4, 4, 3, 3)  # sample id at every location
    deep = ids[None].expand(2, 4, 4)
    first, last = train_discriminator(shallow, deep)
    assert first == pytest.approx(2 * LOG2, abs=0.1)  # T near 0 at initialisation
    assert last < 0.1  # towards the bound 0 of a perfect separation


def test_no_information_keeps_the_loss_at_its_floor() -> None:
    """With identical shallow features, a joint and a product pair look the same to T, so
    -MI >= 2 log 2 whatever T learns."""
    shallow = torch.ones(2, 4, 4, 3, 3)
    deep = torch.eye(4)[None].expand(2, 4, 4)
    _, last = train_discriminator(shallow, deep)
    assert last >= 2 * LOG2 - 1e-4


def test_gradient_reaches_discriminator_and_both_features() -> None:
    shallow = torch.randn(2, 5, 3, 2, 2, requires_grad=True)
    deep = torch.randn(2, 5, 6, requires_grad=True)
    probs = (torch.randn(1, 2, 5, 4) * 5).softmax(-1).requires_grad_()
    obj = DCCMTripletMI(DCCMTripletMIParams(hidden=8, thres1=0.5), context(3, 6))
    loss = obj(ModelOutputs(probs, None, {"shallow": shallow, "deep": deep}))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in obj.parameters())
    assert shallow.grad.abs().sum() > 0 and deep.grad.abs().sum() > 0
    assert probs.grad is None  # the pseudo-graph only selects pairs


def test_missing_feature_and_bad_head_are_clear_errors() -> None:
    ctx = ObjectiveContext(heads=1, views=2, clusters=4, overclusters=0, feature_channels={"deep": 4})
    with pytest.raises(PluginError, match="shallow"):
        DCCMTripletMI(DCCMTripletMIParams(), ctx)
    with pytest.raises(RecipeError, match="head = 3"):
        DCCMTripletMI(DCCMTripletMIParams(head=3), context(3, 4, heads=2))
