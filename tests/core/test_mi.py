"""mihead.mi against mutual information computed from its definition with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from mihead.mi import joint_table, mutual_information, symmetrise


def direct_mi(p: np.ndarray, lamb: float = 1.0) -> float:
    """sum_ij p_ij log(p_ij / (p_i p_j)) over non-empty cells, plus (lamb - 1) times the two
    marginal entropies (IIC's entropy weighting: -lamb sum p log p_i - lamb sum p log p_j)."""
    p = np.asarray(p, dtype=np.float64)
    pi, pj = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float(np.sum(p[nz] * np.log(p[nz] / np.outer(pi, pj)[nz])))
    entropy = lambda q: float(-np.sum(q[q > 0] * np.log(q[q > 0])))  # noqa: E731
    return mi + (lamb - 1.0) * (entropy(pi) + entropy(pj))


def one_hot(assign: np.ndarray, k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(assign), k).double()


def random_probs(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).mul(2).softmax(-1)


def test_joint_table_of_integer_assignments_is_the_count_table() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 300), rng.integers(0, 6, 300)
    counts = np.zeros((4, 6))
    np.add.at(counts, (a, b), 1)
    p = joint_table(one_hot(a, 4), one_hot(b, 6))
    assert p.dtype == torch.float32 and p.shape == (4, 6)
    np.testing.assert_allclose(p.numpy(), counts / 300, atol=1e-7)


def test_mi_of_hard_assignments_matches_definition_and_sklearn() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, 500)
    b = np.where(rng.random(500) < 0.7, a, rng.integers(0, 5, 500))  # correlated with a
    mi = float(mutual_information(joint_table(one_hot(a, 5), one_hot(b, 5))))
    counts = np.zeros((5, 5))
    np.add.at(counts, (a, b), 1)
    assert mi == pytest.approx(direct_mi(counts / 500), abs=1e-5)
    assert mi == pytest.approx(mutual_info_score(a, b), abs=1e-5)
    assert mi > 0.3


def test_mi_of_soft_assignments_matches_an_explicit_joint() -> None:
    z, z2 = random_probs(64, 7, seed=2), random_probs(64, 5, seed=3)
    explicit = sum(np.outer(z[b].numpy(), z2[b].numpy()) for b in range(64)) / 64
    p = joint_table(z, z2)
    np.testing.assert_allclose(p.numpy(), explicit, atol=1e-6)
    assert float(mutual_information(p)) == pytest.approx(direct_mi(explicit), abs=1e-5)


def test_identical_and_independent_assignments() -> None:
    a = np.arange(400) % 8
    same = joint_table(one_hot(a, 8), one_hot(a, 8))
    assert float(mutual_information(same)) == pytest.approx(np.log(8), abs=1e-5)
    indep = joint_table(one_hot(a % 4, 4), one_hot(a // 4 % 2, 2))  # uniform and independent
    assert float(mutual_information(indep)) == pytest.approx(0.0, abs=1e-6)


def test_symmetrise_averages_the_table_and_its_transpose() -> None:
    z, z2 = random_probs(50, 6, seed=4), random_probs(50, 6, seed=5)
    p = joint_table(z, z2)
    s = symmetrise(p)
    np.testing.assert_allclose(s.numpy(), (p.numpy() + p.numpy().T) / 2, atol=1e-7)
    np.testing.assert_allclose(s.numpy(), s.numpy().T)
    assert float(s.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(mutual_information(s)) == pytest.approx(direct_mi(s.numpy()), abs=1e-5)
    # order of the views does not matter once symmetrised
    np.testing.assert_allclose(symmetrise(joint_table(z2, z)).numpy(), s.numpy(), atol=1e-7)


@pytest.mark.parametrize("lamb", [1.0, 1.5, 2.0, 5.0])
def test_entropy_weighting_lamb(lamb: float) -> None:
    z, z2 = random_probs(80, 5, seed=6), random_probs(80, 5, seed=7)
    p = joint_table(z, z2)
    assert float(mutual_information(p, lamb)) == pytest.approx(direct_mi(p.numpy(), lamb), abs=1e-5)


def test_lamb_above_one_rewards_balanced_marginals_more() -> None:
    # identical uniform assignments over 4 clusters: MI = log 4, each marginal entropy log 4
    balanced = joint_table(one_hot(np.arange(100) % 4, 4), one_hot(np.arange(100) % 4, 4))
    assert float(mutual_information(balanced, 2.0)) == pytest.approx(3 * np.log(4), abs=1e-5)


def test_empty_cells_give_finite_values_and_gradients() -> None:
    # clusters 2 and 3 are never used: whole empty rows and columns
    a = np.array([0, 1, 0, 1, 0, 0])
    z = one_hot(a, 4).float().requires_grad_()
    z2 = one_hot(1 - a, 4).float().requires_grad_()
    p = joint_table(z, z2)
    assert (p == 0).sum() == 14
    mi = mutual_information(symmetrise(p), lamb=1.5)
    assert torch.isfinite(mi)
    assert float(mi.detach()) == pytest.approx(direct_mi(symmetrise(p).detach().numpy(), 1.5), abs=1e-5)
    mi.backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(z2.grad).all()


def test_batched_leading_dimensions() -> None:
    z, z2 = random_probs(3, 4, 40, 6, seed=8), random_probs(3, 4, 40, 6, seed=9)
    p = joint_table(z, z2)
    mi = mutual_information(p, 1.3)
    assert p.shape == (3, 4, 6, 6) and mi.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            single = joint_table(z[i, j], z2[i, j])
            torch.testing.assert_close(p[i, j], single)
            assert float(mi[i, j]) == pytest.approx(direct_mi(single.numpy(), 1.3), abs=1e-5)


def test_bf16_autocast_keeps_float32_and_finite_gradients() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 10)
    x = torch.randn(2, 64, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        assert logits.dtype == torch.bfloat16
        probs = logits.softmax(-1)
        p = symmetrise(joint_table(probs[0], probs[1]))
        mi = mutual_information(p)
    assert p.dtype == torch.float32 and mi.dtype == torch.float32
    assert torch.isfinite(mi)
    assert float(mi.detach()) == pytest.approx(direct_mi(p.detach().double().numpy()), abs=1e-5)
    (-mi).backward()
    assert all(torch.isfinite(t.grad).all() for t in layer.parameters())
    assert layer.weight.grad.abs().sum() > 0


def test_bf16_autocast_with_saturated_probabilities() -> None:
    """Near one-hot bf16 probabilities underflow to exact zeros; the MI stays finite."""
    logits = torch.tensor([[60.0, 0.0, 0.0], [0.0, 60.0, 0.0]] * 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probs = (logits.to(torch.bfloat16) * 1).softmax(-1)
        mi = mutual_information(joint_table(probs, probs), lamb=2.0)
    assert mi.dtype == torch.float32 and torch.isfinite(mi)
    mi.backward()
    assert torch.isfinite(logits.grad).all()
