"""An example third-party mihead plugin: the ``marginal_entropy`` objective.

A regulariser against collapsed clusterings: minus the entropy of the marginal cluster
distribution of a batch, H(E_b[z_b]) = -sum_k p_k log p_k with p = E_b[z_b], for each head and
view, averaged. It is the marginal-entropy part of IIC's mutual information (MI = H(z) - H(z|z')),
so adding it with a small weight favours using every cluster. With ``normalise`` the entropy is
divided by log K, so 1 means uniform usage whatever the number of clusters.

Everything a plugin needs is imported from ``mihead`` (the contracts and ``hookimpl``); it
imports no other plugin.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from mihead import hookimpl
from mihead.contracts import ModelOutputs, Objective, ObjectiveParams, param

__all__ = ["MarginalEntropy", "MarginalEntropyParams", "register_objectives"]

EPS = 1e-10


@dataclasses.dataclass(frozen=True)
class MarginalEntropyParams(ObjectiveParams):
    """Keys of a ``[[objective]]`` table naming ``marginal_entropy`` (``weight`` comes from
    ObjectiveParams)."""

    normalise: bool = param(True, "divide the entropy by log K (1 = every cluster used equally)")
    overclustering: bool = param(False, "also regularise the overclustering heads")


def marginal_entropy(probs: torch.Tensor) -> torch.Tensor:
    """H(E_b[z_b]) in nats for probabilities [..., B, K] -> [...]."""
    p = probs.float().mean(-2)
    return -(p * p.clamp_min(EPS).log()).sum(-1)


class MarginalEntropy(Objective[MarginalEntropyParams]):
    """Minus the entropy of the batch's marginal cluster distribution, averaged over main heads
    and views (and overclustering heads when asked)."""

    name = "marginal_entropy"

    def _term(self, probs: torch.Tensor) -> torch.Tensor:
        h = marginal_entropy(probs).mean()
        return h / math.log(probs.shape[-1]) if self.params.normalise else h

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        loss = -self._term(outputs.probs)
        if self.params.overclustering and outputs.over_probs is not None:
            loss = loss - self._term(outputs.over_probs)
        return loss


@hookimpl
def register_objectives() -> list[type[Objective]]:
    return [MarginalEntropy]
