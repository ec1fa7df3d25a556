"""The ``temi`` objective against TEMI's weighted beta-PMI computed directly with numpy, its
cluster prior's moving average, where its gradient goes, and its prior through a checkpoint."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from mihead.contracts import ModelOutputs, ObjectiveContext
from mihead.testing import check_objective
from mihead_temi import TEMI, TEMIParams, temi_loss


def probabilities(heads: int, views: int, batch: int, clusters: int, seed: int = 0) -> torch.Tensor:
    logits = 2 * torch.randn(heads, views, batch, clusters, generator=torch.Generator().manual_seed(seed))
    return logits.softmax(-1)


def direct(probs: np.ndarray, prior: np.ndarray, beta: float, weighting: str) -> float:
    """-mean over heads, ordered pairs (a != b) and samples of w * log sum_c (p_a p_b)^beta / prior."""
    heads, views, batch, _ = probs.shape
    agree = np.zeros((heads, views, views, batch))
    for h, a, b, i in itertools.product(range(heads), range(views), range(views), range(batch)):
        agree[h, a, b, i] = np.sum(probs[h, a, i] * probs[h, b, i])
    total, count = 0.0, 0
    for h in range(heads):
        for a, b in itertools.permutations(range(views), 2):
            for i in range(batch):
                pmi = np.log(np.sum((probs[h, a, i] * probs[h, b, i]) ** beta / prior[h]))
                w = {"heads_mean": agree[:, a, b, i].mean(), "per_head": agree[h, a, b, i], "none": 1.0}[weighting]
                total += w * pmi
                count += 1
    return -total / count


@pytest.mark.parametrize("weighting", ["heads_mean", "per_head", "none"])
@pytest.mark.parametrize(("heads", "views", "beta"), [(1, 2, 0.6), (3, 2, 0.6), (2, 3, 0.3), (2, 4, 1.0)])
def test_the_loss_is_the_papers_weighted_beta_pmi(heads: int, views: int, beta: float, weighting: str) -> None:
    probs = probabilities(heads, views, 6, 5, seed=heads * 10 + views)
    prior = torch.rand(heads, 5, generator=torch.Generator().manual_seed(1)) + 0.1
    prior /= prior.sum(1, keepdim=True)
    value = temi_loss(probs, prior, beta, weighting).mean()
    assert value.item() == pytest.approx(direct(probs.double().numpy(), prior.double().numpy(), beta, weighting), rel=1e-5)


def test_with_beta_one_and_a_uniform_prior_it_is_plain_pmi() -> None:
    probs = probabilities(1, 2, 4, 3)
    uniform = torch.full((1, 3), 1 / 3)
    pa, pb = probs[0, 0].double(), probs[0, 1].double()
    pmi = torch.log((pa * pb).sum(-1) * 3)  # log sum_c p(c|a) p(c|b) / (1/K)
    expected = -((pa * pb).sum(-1) * pmi).mean()
    assert temi_loss(probs, uniform, 1.0, "none").item() == pytest.approx(-pmi.mean().item(), rel=1e-6)
    assert temi_loss(probs, uniform, 1.0, "per_head").item() == pytest.approx(expected.item(), rel=1e-6)


def test_the_gradient_goes_through_the_student_side_only() -> None:
    """With two views the loss is the (a, b) term plus the (b, a) term; each differentiates
    only its first view, so a view's gradient is that of its own term, the weight held fixed."""
    probs = probabilities(1, 2, 4, 3).requires_grad_()
    prior = torch.full((1, 3), 1 / 3)
    temi_loss(probs, prior, 0.6, "per_head").sum().backward()
    a = probs.detach()[0, 0].clone().requires_grad_()
    b = probs.detach()[0, 1]
    w = (a.detach() * b).sum(-1)
    one_order = -(w * ((a * b).pow(0.6) / prior[0]).sum(-1).log()).sum() / (2 * 4)
    one_order.backward()
    assert a.grad is not None
    torch.testing.assert_close(probs.grad[0, 0], a.grad)


def context(heads: int = 2, clusters: int = 4, overclusters: int = 0) -> ObjectiveContext:
    return ObjectiveContext(heads=heads, views=2, clusters=clusters, overclusters=overclusters, feature_channels={})


def test_the_prior_is_a_moving_average_of_the_training_batches() -> None:
    objective = TEMI(TEMIParams(momentum=0.9), context())
    expected = np.full((2, 4), 0.25)
    batches = [probabilities(2, 2, 8, 4, seed=s) for s in range(3)]
    for probs in batches:
        before = objective.prior.clone()
        objective(ModelOutputs(probs=probs, over_probs=None, features={}))
        expected = 0.9 * expected + 0.1 * probs.double().numpy().mean(axis=(1, 2))
        assert not torch.equal(before, objective.prior)
    np.testing.assert_allclose(objective.prior.numpy(), expected, rtol=1e-6)
    objective.eval()
    frozen = objective.prior.clone()
    objective(ModelOutputs(probs=batches[0], over_probs=None, features={}))
    assert torch.equal(frozen, objective.prior)  # outside training the prior stays


def test_the_loss_uses_the_prior_moved_by_its_own_batch() -> None:
    """As the official code: the batch's mean assignment enters the prior (weight 1 - m) before its loss."""
    objective = TEMI(TEMIParams(), context())
    probs = probabilities(2, 2, 8, 4)
    loss = objective(ModelOutputs(probs=probs, over_probs=None, features={}))
    moved = 0.9 * torch.full((2, 4), 0.25) + 0.1 * probs.mean(dim=(1, 2))
    assert loss.item() == pytest.approx(temi_loss(probs, moved, 0.6).mean().item(), rel=1e-6)
    assert loss.item() != pytest.approx(temi_loss(probs, torch.full((2, 4), 0.25), 0.6).mean().item(), rel=1e-6)


def test_a_cluster_no_sample_touches_leaves_the_loss_finite() -> None:
    """Momentum 0 and a cluster whose probabilities underflow to 0 in float32: its prior is 0."""
    objective = TEMI(TEMIParams(momentum=0.0), ObjectiveContext(heads=1, views=2, clusters=3, overclusters=0, feature_channels={}))
    logits = torch.tensor([[200.0, 0.0, -200.0], [0.0, 200.0, -200.0]]).expand(1, 2, 2, 3).clone().requires_grad_()
    for _ in range(2):
        loss = objective(ModelOutputs(probs=logits.softmax(-1), over_probs=None, features={}))
        loss.backward()
        assert torch.isfinite(loss) and logits.grad is not None and torch.isfinite(logits.grad).all()


def test_overclustering_heads_have_their_own_prior() -> None:
    objective = TEMI(TEMIParams(), context(overclusters=7))
    assert objective.over_prior.shape == (2, 7)
    probs, over = probabilities(2, 2, 8, 4), probabilities(2, 2, 8, 7, seed=3)
    loss = objective(ModelOutputs(probs=probs, over_probs=over, features={}))
    moved, over_moved = (0.9 * torch.full_like(p.mean(dim=(1, 2)), 1 / p.shape[-1]) + 0.1 * p.mean(dim=(1, 2)) for p in (probs, over))
    both = temi_loss(probs, moved, 0.6).mean() + temi_loss(over, over_moved, 0.6).mean()
    assert loss.item() == pytest.approx(both.item(), rel=1e-6)
    alone = TEMI(TEMIParams(overclustering=False), context(overclusters=7))
    assert alone(ModelOutputs(probs=probs, over_probs=over, features={})).item() == pytest.approx(temi_loss(probs, moved, 0.6).mean().item(), rel=1e-6)


def test_the_prior_is_kept_in_the_state_dict() -> None:
    trained = TEMI(TEMIParams(), context())
    trained(ModelOutputs(probs=probabilities(2, 2, 8, 4), over_probs=None, features={}))
    restored = TEMI(TEMIParams(), context())
    restored.load_state_dict(trained.state_dict())
    assert torch.equal(restored.prior, trained.prior) and not torch.equal(restored.prior, torch.full((2, 4), 0.25))


def test_a_one_hot_pair_stays_finite() -> None:
    probs = torch.zeros(1, 2, 3, 4)
    probs[..., 0] = 1.0
    probs.requires_grad_()
    loss = temi_loss(probs, torch.full((1, 4), 0.25), 0.6).sum()
    loss.backward()
    assert torch.isfinite(loss) and probs.grad is not None and torch.isfinite(probs.grad).all()


def test_contract() -> None:
    check_objective(TEMI)


def _temi_rank(rank: int, world: int, rendezvous: str, batches: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        objective = TEMI(TEMIParams(), context())
        for probs in batches[:, :, :, rank * 4 : (rank + 1) * 4]:  # this rank's half of each global batch
            objective(ModelOutputs(probs=probs, over_probs=None, features={}))
        torch.save(objective.prior, Path(out) / f"prior{rank}.pt")
        dist.barrier()  # both ranks done before either tears gloo down (else one may abort at exit)
    finally:
        dist.destroy_process_group()


def test_under_two_processes_every_rank_keeps_the_prior_of_the_global_batch(tmp_path: Path) -> None:
    """Each rank's batch mean is averaged over the ranks before the moving average: both ranks
    end with the prior of one process that saw the whole global batches."""
    import torch.multiprocessing as mp

    batches = torch.stack([probabilities(2, 2, 8, 4, seed=s) for s in range(3)])
    mp.spawn(_temi_rank, args=(2, str(tmp_path / "rendezvous"), batches, str(tmp_path)), nprocs=2)
    alone = TEMI(TEMIParams(), context())
    for probs in batches:
        alone(ModelOutputs(probs=probs, over_probs=None, features={}))
    for rank in range(2):
        torch.testing.assert_close(torch.load(tmp_path / f"prior{rank}.pt"), alone.prior)
