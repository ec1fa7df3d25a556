"""Tests of the example plugin, as its author would write them with mihead.testing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mihead_example_plugin import MarginalEntropy, MarginalEntropyParams

from mihead.contracts import ModelOutputs, ObjectiveContext
from mihead.testing import check_plugin, fake_outputs


def test_contract() -> None:
    check_plugin("objective", MarginalEntropy)


def test_value_matches_numpy() -> None:
    out = fake_outputs(heads=2, views=3, batch=5, clusters=4)
    context = ObjectiveContext(heads=2, views=3, clusters=4, overclusters=0, feature_channels={})
    loss = MarginalEntropy(MarginalEntropyParams(normalise=False), context)(out)
    p = out.probs.detach().double().numpy().mean(2)  # [H, V, K]
    expected = -np.mean(-(p * np.log(p)).sum(-1))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_uniform_usage_gives_minus_one_when_normalised() -> None:
    probs = torch.eye(4).repeat(2, 1)[None, None]  # 8 samples, each cluster twice
    context = ObjectiveContext(heads=1, views=1, clusters=4, overclusters=0, feature_channels={})
    loss = MarginalEntropy(MarginalEntropyParams(), context)(ModelOutputs(probs, None, {}))
    assert loss.item() == pytest.approx(-1.0)
    collapsed = torch.zeros(1, 1, 8, 4)
    collapsed[..., 0] = 1
    assert MarginalEntropy(MarginalEntropyParams(), context)(ModelOutputs(collapsed, None, {})).item() == pytest.approx(0.0, abs=1e-6)
