"""Mutual information of discrete cluster assignments, from joint tables over a batch.

Following IIC (Ji et al., 2019), the joint distribution of the assignments c, c' of two
probability vectors z, z' is estimated over a batch as P = E[z z'^T]; then
MI(c, c') = sum_ij P_ij (log P_ij - log P_i - log P_j) with P_i, P_j its marginals, which is
Tr(P^T log P) - E[z]^T log E[z] - E[z']^T log E[z'] in DHOG's notation (eq. 1 and 2). Every
function takes batched tensors (leading dimensions are kept) so that all heads and view pairs
are computed in one operation, and runs in float32 with autocast off, so that the logs stay
finite under bf16 autocast.

Under data-parallel training (several processes, see :mod:`mihead.distributed`) the joint
table is the mean over the global batch, all ranks' samples, summed across ranks with
gradients: N processes of batch B compute the MI of one process of batch N * B.
"""

from __future__ import annotations

import torch

from mihead.distributed import global_batch_mean

__all__ = ["EPS", "joint_table", "mutual_information", "symmetrise"]

EPS = 1e-10


def joint_table(z: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """P = E_b[z_b z2_b^T] for probabilities [..., B, K] and [..., B, K2] -> [..., K, K2], the
    mean over the global batch of every training process (every rank must call it)."""
    with torch.autocast(device_type=z.device.type, enabled=False):
        z, z2 = z.float(), z2.float()
        return global_batch_mean(z.transpose(-1, -2) @ z2, z.shape[-2])


def symmetrise(p: torch.Tensor) -> torch.Tensor:
    """(P + P^T) / 2: the joint of two views whose order does not matter."""
    return (p + p.transpose(-1, -2)) / 2


def mutual_information(p: torch.Tensor, lamb: float = 1.0) -> torch.Tensor:
    """MI in nats of joint tables [..., K, K2] (each summing to one) -> [...].

    ``lamb`` > 1 weights the marginal entropies more, as IIC's optional entropy weighting does
    (``lamb`` = 1 is the mutual information itself). Entries are clamped at ``EPS`` inside the
    logs only, so that empty cells give zero, not NaN.
    """
    with torch.autocast(device_type=p.device.type, enabled=False):
        p = p.float()
        row = p.sum(-1, keepdim=True)
        col = p.sum(-2, keepdim=True)

        def log(t: torch.Tensor) -> torch.Tensor:
            return t.clamp_min(EPS).log()

        return (p * (log(p) - lamb * log(row) - lamb * log(col))).sum((-1, -2))
