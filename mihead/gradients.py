"""One step's backward pass: the weighted sum of the objectives' terms, where a head-specific
term's gradient reaches only the weights that belong to one head.

DHOG (section 3.2): "The hierarchical arrangement is induced by only updating head-specific
weights according to comparisons made with earlier heads." A term whose objective says
:meth:`~mihead.contracts.Objective.head_specific` is differentiated with respect to the heads'
own weights alone (:meth:`mihead.model.MultiHeadModel.head_parameters`, and the objective's own
parameters), so the shared trunk gets no gradient from it while every other term trains
everything. It costs one extra backward pass through the head-specific parts only: autograd
computes nothing below the weights asked for, and the forward pass is not repeated.
"""

from __future__ import annotations

import torch

from mihead.build import ObjectiveTerm
from mihead.contracts import Objective
from mihead.model import MultiHeadModel

__all__ = ["backward"]


def backward(terms: dict[str, torch.Tensor], objectives: list[ObjectiveTerm], model: MultiHeadModel) -> None:
    """Accumulate into ``.grad`` the gradient of sum(weight x term): the head-specific terms'
    (of non-zero weight) with respect to the heads' own weights only, the others' with
    respect to everything (in one pass when the model has no shared weights to keep the
    head-specific terms from, as on a frozen encoder). The head-specific part goes into ``.grad`` first, so that a
    data-parallel wrapper, which averages each gradient as the second pass accumulates it,
    averages the sum."""
    whole: list[torch.Tensor] = []
    specific: list[tuple[torch.Tensor, Objective]] = []
    for t in objectives:
        if not t.module.head_specific(t.module.params):
            whole.append(t.weight * terms[t.name])
        elif t.weight != 0:
            specific.append((t.weight * terms[t.name], t.module))
    own = [p for head in model.head_parameters() for p in head if p.requires_grad] if specific else []
    if specific and {id(p) for p in own} >= {id(p) for p in model.parameters() if p.requires_grad}:
        whole += [t for t, _ in specific]  # nothing is shared (a frozen encoder): one pass gives the same gradient
        specific = []
    if specific:
        inputs = own + [p for _, o in specific for p in o.parameters() if p.requires_grad]
        loss = torch.stack([t for t, _ in specific]).sum()
        grads = torch.autograd.grad(loss, inputs, retain_graph=bool(whole), allow_unused=True)
        for p, g in zip(inputs, grads, strict=True):
            if g is not None:  # None: a weight the term does not reach (allow_unused)
                if g.stride() != p.stride():  # in the parameter's own layout, as AccumulateGrad keeps it
                    g = torch.empty_like(p).copy_(g)
                p.grad = g if p.grad is None else p.grad + g
    if whole:
        sum(whole).backward()  # type: ignore[union-attr]
