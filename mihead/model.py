"""The multi-head model: a backbone with heads on its attachment points."""

from __future__ import annotations

import torch
from torch import nn

from mihead.contracts import Backbone, Head, ModelOutputs
from mihead.errors import RecipeError

__all__ = ["MultiHeadModel"]


class MultiHeadModel(nn.Module):
    """Backbone plus main heads (and optional overclustering heads), in hierarchy order.

    Head ``i`` sits on attachment point ``i // per_attachment``; with overclustering, head
    ``i``'s twin ``over_heads[i]`` sits on the same point.
    """

    def __init__(
        self,
        backbone: Backbone,
        heads: list[Head],
        over_heads: list[Head],
        per_attachment: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(heads)
        self.over_heads = nn.ModuleList(over_heads)
        self.per_attachment = per_attachment
        self.clusters = heads[0].clusters  # K of every main head
        self.channels_last = False  # set by the engine: feed images in channels-last layout

    @property
    def num_heads(self) -> int:
        return len(self.heads)

    def head_parameters(self) -> list[list[nn.Parameter]]:
        """Per main head, the weights that belong to it alone: its head module's, and the
        backbone parameters its attachment point owns (``Backbone.owned_parameters``) when it
        is the only main head on that point (several heads on one point share its blocks).
        Its overclustering twin is not included: it is trained by the pull, not compared."""
        owned = self.backbone.owned_parameters()
        if owned is None:
            raise RecipeError(
                f"backbone {self.backbone.name!r} does not declare which parameters belong to each "
                "attachment point, so a head-specific gradient cannot be told from a shared one"
            )
        point = [owned[i // self.per_attachment] if self.per_attachment == 1 else [] for i in range(self.num_heads)]
        return [[*head.parameters(), *own] for head, own in zip(self.heads, point, strict=True)]

    def forward(self, views: torch.Tensor) -> ModelOutputs:
        """Outputs for views [V, B, C, H, W]; every head sees every view."""
        v, b = views.shape[:2]
        images = views.flatten(0, 1)
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        out = self.backbone(images)

        def run(heads: nn.ModuleList) -> torch.Tensor:
            probs = [h(out.attach[i // self.per_attachment]) for i, h in enumerate(heads)]
            return torch.stack(probs).unflatten(1, (v, b)).float()

        features = {k: f.unflatten(0, (v, b)) for k, f in out.features.items()}
        over = run(self.over_heads) if len(self.over_heads) else None
        return ModelOutputs(probs=run(self.heads), over_probs=over, features=features)
