"""The ``iic`` objective: mutual information between the assignments of augmented views.

Ji, Henriques and Vedaldi, "Invariant Information Clustering for Unsupervised Image
Classification and Segmentation", ICCV 2019; used as DHOG's pull term (eq. 1 and 3 of the DHOG
paper: "MI_pull = 1/k sum_i MI_aug(c_i, c'_i)", the MI "maximised pairwise between all pairs"
of the augmentations).
"""

from __future__ import annotations

import dataclasses

import torch

from mihead import hookimpl
from mihead.contracts import ModelOutputs, Objective, ObjectiveParams, param
from mihead.mi import joint_table, mutual_information, symmetrise


@dataclasses.dataclass(frozen=True)
class IICParams(ObjectiveParams):
    lamb: float = param(1.0, "weight of the marginal entropies (IIC's lambda; 1 = plain MI)", ge=1.0)
    overclustering: bool = param(True, "also pull the overclustering heads' views together")


def pairwise_view_mi(probs: torch.Tensor, lamb: float = 1.0) -> torch.Tensor:
    """MI of every pair of views (v < w) of every head, for probs [H, V, B, K] -> [H, P]."""
    views = probs.shape[1]
    first, second = torch.triu_indices(views, views, offset=1, device=probs.device)
    # index_select, not probs[:, first]: its backward adds the repeated views in a fixed order (mihead/op_audit.py)
    table = symmetrise(joint_table(probs.index_select(1, first), probs.index_select(1, second)))
    return mutual_information(table, lamb)


class IIC(Objective[IICParams]):
    """Minus the mean, over heads and pairs of views, of the mutual information between the
    views' cluster assignments; the overclustering heads' mean is added when there are any."""

    name = "iic"

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        loss = -pairwise_view_mi(outputs.probs, self.params.lamb).mean()
        if self.params.overclustering and outputs.over_probs is not None:
            loss = loss - pairwise_view_mi(outputs.over_probs, self.params.lamb).mean()
        return loss


@hookimpl
def register_objectives() -> list[type[Objective]]:
    return [IIC]
