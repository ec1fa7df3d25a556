"""The ``mlp`` head: pooled features, an optional hidden layer, softmax over K clusters.

DHOG: "Each MLP has a single hidden layer of width 200."

``logit_batchnorm`` batch-normalises the logits before the softmax. It is not in DCCM's paper
(Table 4's last row is Linear(64, c) SoftMax) but is in the authors' released code
(github.com/Cory-M/DCCM, ``models/cifar_C4_L2.py``: Linear(64, num_classes),
BatchNorm1d(num_classes), Softmax), and it matters for DCCM's fixed thres_1 = 0.95: the softmax
of an untrained linear layer is close to uniform, so the cosine similarity of almost any two
predictions is near 1 and many pairs of a batch start as pseudo-graph edges (eq. 2), which the
graph loss then pulls into one cluster. Standardised logits spread the first predictions
(recipes/dccm_digits.toml's first batch: 0.5 % of the pairs are edges instead of 60 %), and
each logit has a zero batch mean, so no cluster can win every sample (docs/dccm.md, "Learning
check").

``batchnorm_stats`` says what the head's batch norms normalise with at evaluation: "running"
(torch's default) uses the running mean and variance gathered in training, "batch" the
statistics of each evaluated batch, in training and evaluation alike (``track_running_stats =
False``), as every batch norm of DCCM's released code does; a prediction then depends on the
other images of its batch.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from mihead import hookimpl
from mihead.contracts import Head, HeadParams, param


@dataclasses.dataclass(frozen=True)
class MLPHeadParams(HeadParams):
    hidden: int = param(200, "width of the hidden layer (0 = a linear head)", ge=0)
    batchnorm: bool = param(True, "batch normalisation after the hidden layer")
    logit_batchnorm: bool = param(
        False, "batch normalisation of the logits before the softmax (DCCM's released code, not its paper)"
    )
    batchnorm_stats: str = param(
        "running",
        "what the batch norms use at evaluation: running = the statistics gathered in training, "
        "batch = each batch's own statistics always (DCCM's released code)",
        choices=("running", "batch"),
    )


class MLPHead(Head[MLPHeadParams]):
    """Global-average-pools a feature map (vectors pass as they are), then Linear -> [BN] ->
    ReLU -> Linear [-> BN of the logits], and returns float32 softmax probabilities."""

    name = "mlp"

    def __init__(self, params: MLPHeadParams, in_channels: int, clusters: int) -> None:
        super().__init__(params, in_channels, clusters)
        layers: list[nn.Module] = []
        running = params.batchnorm_stats == "running"
        if params.hidden:
            layers.append(nn.Linear(in_channels, params.hidden))
            if params.batchnorm:
                layers.append(nn.BatchNorm1d(params.hidden, track_running_stats=running))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Linear(params.hidden or in_channels, clusters))
        if params.logit_batchnorm:
            layers.append(nn.BatchNorm1d(clusters, track_running_stats=running))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 4:
            features = features.mean((2, 3))
        return self.mlp(features).float().softmax(-1)


@hookimpl
def register_heads() -> list[type[Head]]:
    return [MLPHead]
