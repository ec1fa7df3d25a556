"""mihead.pseudo: cosine similarity, pseudo-graph and pseudo-labels against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mihead.pseudo import combine_views, cosine_similarity, pseudo_graph, pseudo_labels, reference_probs


def test_cosine_similarity_matches_numpy() -> None:
    z = torch.rand(2, 5, 4)
    zn = z.numpy()
    unit = zn / np.linalg.norm(zn, axis=-1, keepdims=True)
    np.testing.assert_allclose(cosine_similarity(z).numpy(), unit @ unit.transpose(0, 2, 1), rtol=1e-5)


def test_identical_one_hot_rows_make_an_edge_and_orthogonal_ones_do_not() -> None:
    z = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0.5, 0.5, 0]])
    w = pseudo_graph(z, 0.95)
    assert w[0, 1] == 1 and w[1, 0] == 1
    assert w[0, 2] == 0 and w[2, 3] == 0  # cos = 0 and cos = 0.707
    assert torch.all(w.diagonal() == 1)


def test_pseudo_labels_and_confidence() -> None:
    z = torch.tensor([[0.95, 0.05], [0.2, 0.8], [0.1, 0.9]])
    y, v = pseudo_labels(z, 0.9)
    assert y.tolist() == [0, 1, 1]
    assert v.tolist() == [1.0, 0.0, 1.0]


def test_reference_probs_detaches_and_takes_view_zero() -> None:
    probs = torch.rand(2, 3, 4, 5, requires_grad=True)
    own = reference_probs(probs, from_original=False)
    assert not own.requires_grad and torch.equal(own, probs.detach())
    ref = reference_probs(probs, from_original=True)
    for v in range(3):
        assert torch.equal(ref[:, v], probs.detach()[:, 0])


def test_combine_views() -> None:
    per_view = torch.tensor([[1.0, 2.0, 4.0]])
    assert combine_views(per_view, False).item() == pytest.approx(7 / 3)
    assert combine_views(per_view, True).item() == 1 + 3
