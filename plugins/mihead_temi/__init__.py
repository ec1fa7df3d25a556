"""The ``temi`` objective: TEMI's weighted pointwise mutual information between paired views.

Adaloglou, Michels, Kalisch and Kollmann, "Exploring the Limits of Deep Image Clustering using
Pretrained Models", BMVC 2023 (https://arxiv.org/abs/2303.17896). The paper "propose[s] a novel
objective that learns associations between image features by introducing a variant of
pointwise mutual information together with instance weighting", trained on pairs of an image
and one of its nearest neighbours in a pretrained feature space (mihead's ``neighbours`` views).

For a pair of views (x, x') and each head h, with q(c|x) its cluster probabilities and q~(c) a
running estimate of the cluster prior, the term is

    pmi_beta(x, x') = log sum_c (q(c|x) q(c|x'))^beta / q~(c)

weighted by how much the pair agrees, w(x, x') = sum_c q(c|x) q(c|x') (not differentiated): a
pair whose assignments disagree, likely a false neighbour, counts little. beta < 1 (0.6 by
default) flattens the joint probabilities, which keeps the heads from collapsing onto few
clusters; beta = 1 with a uniform prior is plain PMI. The loss is minus the mean of
w * pmi_beta over heads, ordered pairs of views and samples. The prior is an exponential moving
average of the batch's mean assignment: q~ <- m q~ + (1 - m) mean_x q(c|x), moved before the
batch's loss is computed, as the official code does (so the batch counts 1 - m in the prior its
own loss divides by, and momentum 0 is the batch's own mean), from the training steps alone
(and averaged over ranks under torchrun, so every rank keeps the same one); it is a buffer of
the objective, saved in checkpoints.

How TEMI's teacher and student map onto mihead: TEMI trains student heads and takes its
targets from teacher heads, an exponential moving average of the student weights with their
own softmax temperatures. mihead's heads are one set; here the second view of each ordered pair
plays the teacher, detached, and both orders (x, x') and (x', x) are summed as TEMI symmetrises
the pair (with both orders from one set of heads, the gradient is half that of the undetached
loss: a scale, not a direction). The weight w is the mean over heads of each head's agreement
(``weighting = "heads_mean"``, shared by the heads as in TEMI's multi-head training;
``per_head``: each head's own; ``none``: 1); with more than two views TEMI's code also averages
it over the view pairs, here each pair keeps its own (the same with two views). Left out: the EMA teacher network and the temperatures (a head's softmax is
its own business in mihead).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist

from mihead import hookimpl
from mihead.contracts import ModelOutputs, Objective, ObjectiveContext, ObjectiveParams, param

__all__ = ["TEMI", "TEMIParams", "temi_loss"]

TINY = 1e-30
"""Floor of a joint probability (whose logarithm's gradient is infinite at 0) and of a prior (a
cluster no sample of a batch touches, in float32, with momentum 0) before their logarithms."""


@dataclasses.dataclass(frozen=True)
class TEMIParams(ObjectiveParams):
    beta: float = param(0.6, "exponent of the joint probabilities (TEMI's beta; 1 = plain PMI)", gt=0, le=1)
    momentum: float = param(0.9, "momentum of the cluster prior's moving average (TEMI's)", ge=0, lt=1)
    weighting: str = param("heads_mean", "each pair's weight: the heads' mean agreement, each head's own, or none", choices=("heads_mean", "per_head", "none"))
    overclustering: bool = param(True, "also train the overclustering heads with the term (each with its own prior)")


def _ordered_pairs(views: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (a, b) with a != b: each view followed by the others, shifted round (no mask,
    whose indexing would wait on the host)."""
    first = torch.arange(views, device=device).repeat_interleave(views - 1)
    second = (first + 1 + torch.arange(views - 1, device=device).repeat(views)) % views
    return first, second


def temi_loss(probs: torch.Tensor, prior: torch.Tensor, beta: float, weighting: str = "heads_mean") -> torch.Tensor:
    """Minus the weighted beta-PMI of every ordered pair of views, for probs [H, V, B, K] and
    cluster priors [H, K]: per head [H], the mean over pairs and samples."""
    first, second = _ordered_pairs(probs.shape[1], probs.device)
    # index_select, not probs[:, first]: its backward adds the repeated views in a fixed order (mihead/op_audit.py)
    student = probs.index_select(1, first)
    teacher = probs.index_select(1, second).detach()
    # log sum_c exp(beta log(q q') - log q~): the same sum, stable however small the terms
    pmi = torch.logsumexp(beta * (student * teacher).clamp_min(TINY).log() - prior.clamp_min(TINY).log()[:, None, None, :], dim=-1)  # [H, P, B]
    with torch.no_grad():
        agree = (student.detach() * teacher).sum(-1)
        weight = {"heads_mean": agree.mean(0, keepdim=True), "per_head": agree, "none": torch.ones_like(agree)}[weighting]
    return -(weight * pmi).mean(dim=(1, 2))


class TEMI(Objective[TEMIParams]):
    """Minus the mean of TEMI's weighted beta-PMI over heads (see the module), plus the
    overclustering heads' mean when they are trained too."""

    name = "temi"
    prior: torch.Tensor
    over_prior: torch.Tensor

    def __init__(self, params: TEMIParams, context: ObjectiveContext) -> None:
        super().__init__(params, context)
        self.register_buffer("prior", torch.full((context.heads, context.clusters), 1 / context.clusters))
        over = max(context.overclusters, 1)
        self.register_buffer("over_prior", torch.full((context.heads if context.overclusters else 0, over), 1 / over))

    def _term(self, probs: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._update(prior, probs)
        return temi_loss(probs, prior.to(probs.dtype), self.params.beta, self.params.weighting).mean()

    @torch.no_grad()
    def _update(self, prior: torch.Tensor, probs: torch.Tensor) -> None:
        """The prior's moving average, before the loss uses it; the same on every rank."""
        batch = probs.detach().float().mean(dim=(1, 2))  # [H, K]
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch)
            batch /= dist.get_world_size()
        prior.mul_(self.params.momentum).add_(batch, alpha=1 - self.params.momentum)

    def forward(self, outputs: ModelOutputs) -> torch.Tensor:
        loss = self._term(outputs.probs, self.prior)
        if self.params.overclustering and outputs.over_probs is not None and self.over_prior.numel():
            loss = loss + self._term(outputs.over_probs, self.over_prior)
        return loss


@hookimpl
def register_objectives() -> list[type[Objective]]:
    return [TEMI]
