"""The ``mlp`` head: pooled features, an optional hidden layer, softmax over K clusters.

DHOG: "Each MLP has a single hidden layer of width 200."
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


class MLPHead(Head):
    """Global-average-pools a feature map (vectors pass as they are), then Linear -> [BN] ->
    ReLU -> Linear, and returns float32 softmax probabilities."""

    name = "mlp"
    Params = MLPHeadParams

    def __init__(self, params: MLPHeadParams, in_channels: int, clusters: int) -> None:
        super().__init__(params, in_channels, clusters)
        if params.hidden:
            layers: list[nn.Module] = [nn.Linear(in_channels, params.hidden)]
            if params.batchnorm:
                layers.append(nn.BatchNorm1d(params.hidden))
            layers += [nn.ReLU(inplace=True), nn.Linear(params.hidden, clusters)]
            self.mlp = nn.Sequential(*layers)
        else:
            self.mlp = nn.Linear(in_channels, clusters)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 4:
            features = features.mean((2, 3))
        return self.mlp(features).float().softmax(-1)


@hookimpl
def register_heads() -> list[type[Head]]:
    return [MLPHead]
