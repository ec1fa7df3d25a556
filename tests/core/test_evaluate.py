"""Evaluation: every head's clusters of a split's views (in order, the model left as it was),
what an Evaluation derives from its assignments (class names, the cluster -> class map, the
confusion table, the NMI between heads, summary.json's metrics, the epoch record) against
direct computations, and evaluate() on unlabelled data and with a fitting split."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import normalized_mutual_info_score
from torch import nn

from corehelp import QUICKSTART, TINY
from mihead.build import build
from mihead.contracts import Backbone, BackboneOutput, Head, HeadParams, ImageData, ImageSpec, Params
from mihead.evaluate import Evaluation, assign_views, evaluate
from mihead.metrics import best_matching, head_result
from mihead.model import MultiHeadModel
from mihead.protocol import resolve_protocol
from mihead.recipe import load_recipe


class MeanColour(Backbone):
    """One attachment point: each image's mean colour [N, 3]; notes whether it ran in eval mode."""

    name = "test_mean_colour"

    def __init__(self) -> None:
        super().__init__(Params(), ImageSpec(channels=3, size=2))
        self.evaluated: list[bool] = []

    @property
    def attach_channels(self) -> list[int]:
        return [3]

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        self.evaluated.append(not self.training)
        return BackboneOutput(attach=[images.mean((2, 3))])


class FixedHead(Head):
    """Softmax of a fixed linear map of the colour: the cluster follows the brightest channel."""

    name = "test_fixed_head"

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__(HeadParams(), 3, weight.shape[0])
        self.weight = nn.Parameter(weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features @ self.weight.T).softmax(-1)


def test_assign_views_takes_every_heads_argmax_in_batch_order_and_restores_the_mode() -> None:
    torch.manual_seed(0)
    heads: list[Head] = [FixedHead(10 * torch.eye(3)), FixedHead(10 * torch.eye(3)[[2, 0, 1]])]
    model = MultiHeadModel(MeanColour(), heads, [], per_attachment=2)
    batches = [torch.rand(2, 4, 3, 2, 2), torch.rand(2, 3, 3, 2, 2)]  # V = 2; B = 4, then 3
    clusters, confidence = assign_views(model, batches, "fp32")
    assert clusters.shape == confidence.shape == (2, 2, 7)
    assert clusters.dtype == np.int64 and confidence.dtype == np.float32
    views = torch.cat(batches, 1)  # [V, 7, C, H, W]: the images in order
    brightest = views.mean((3, 4)).argmax(-1).numpy()  # [V, 7]
    np.testing.assert_array_equal(clusters[0], brightest)
    np.testing.assert_array_equal(clusters[1], np.array([1, 2, 0])[brightest])  # head 1's rows permuted
    with torch.no_grad():
        probs = model(views).probs  # [H, V, 7, K]
    np.testing.assert_allclose(confidence, probs.max(-1).values.numpy(), rtol=1e-6)
    backbone = model.backbone
    assert isinstance(backbone, MeanColour) and backbone.evaluated[:2] == [True, True]  # eval mode inside
    assert model.training  # and training mode again after


LABELS = np.array([0, 0, 1, 1, 2, 2])
ASSIGNMENTS = np.array([[1, 1, 0, 0, 2, 2], [0, 1, 0, 1, 0, 1]])


def synthetic(labels: np.ndarray | None = LABELS, classes: tuple[str, ...] = ("cat", "dog", "owl"), **fields: object) -> Evaluation:
    """An Evaluation of 6 images by two heads of 3 clusters: head 0 is the labels relabelled,
    head 1 splits every class in two."""
    results = [head_result(h, a, a, a, labels, 3) for h, a in enumerate(ASSIGNMENTS)]
    confidence = np.full(ASSIGNMENTS.shape, 0.5, dtype=np.float32)
    ids = tuple(f"img{i}" for i in range(6))
    return Evaluation(results, 0, "nmi_zz", 0 if labels is not None else None, ASSIGNMENTS, confidence, ids, labels, classes, **fields)  # type: ignore[arg-type]


def test_class_names_matching_and_confusion() -> None:
    evaluation = synthetic()
    assert evaluation.num_heads == 2
    assert [evaluation.class_name(c) for c in (0, 2, 3, -1)] == ["cat", "owl", "3", "-1"]
    assert evaluation.matching(0) == {1: 0, 0: 1, 2: 2}
    assert evaluation.heads[0].acc == 1.0
    second = evaluation.matching(1)  # any one-to-one map with the most agreement: 2 of 6 images
    assert len(set(second.values())) == len(second) and set(second) <= {0, 1}
    assert sum(second.get(int(a), -1) == y for a, y in zip(ASSIGNMENTS[1], LABELS, strict=True)) == 2
    np.testing.assert_array_equal(evaluation.confusion(0), [[0, 2, 0], [2, 0, 0], [0, 0, 2]])
    np.testing.assert_array_equal(evaluation.confusion(1), [[1, 1, 0], [1, 1, 0], [1, 1, 0]])
    fitted = synthetic(mappings=({0: 2}, {1: 1}))
    assert fitted.matching(0) == {0: 2} and fitted.matching(1) == {1: 1}  # the fitted maps, not these labels'
    beyond = synthetic(classes=("cat", "dog")).confusion(0)
    assert beyond is not None and beyond.shape == (3, 3)  # a label beyond the names gets a row
    unlabelled = synthetic(labels=None)
    assert unlabelled.matching(0) == {} and unlabelled.confusion(0) is None


def test_matching_is_computed_once_per_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plots, assignments.csv and the gallery each ask for a head's map: one Hungarian matching."""
    import mihead.evaluate

    expected = [best_matching(LABELS, a) for a in ASSIGNMENTS]
    matched: list[int] = []

    def counting(labels: np.ndarray, assignments: np.ndarray) -> dict[int, int]:
        matched.append(next(h for h, a in enumerate(ASSIGNMENTS) if a is assignments or np.array_equal(a, assignments)))
        return best_matching(labels, assignments)

    monkeypatch.setattr(mihead.evaluate, "best_matching", counting)
    evaluation = synthetic()
    assert [evaluation.matching(h) for h in (1, 0, 1, 0, 0)] == [expected[1], expected[0], expected[1], expected[0], expected[0]]
    assert matched == [1, 0]
    assert evaluation.summary() == synthetic().summary()  # the cache is no field of what is recorded


def test_heads_nmi_once_and_the_summary() -> None:
    evaluation = synthetic()
    table = evaluation.heads_nmi
    assert evaluation.heads_nmi is table  # computed once
    np.testing.assert_allclose(np.diag(table), 1.0)
    assert table[0, 1] == table[1, 0] == pytest.approx(normalized_mutual_info_score(*ASSIGNMENTS))
    summary = evaluation.summary()
    chosen = evaluation.heads[0]
    assert (summary["acc"], summary["nmi"], summary["ari"]) == (chosen.acc, chosen.nmi, chosen.ari)
    assert summary["selected_head"] == 0 and summary["selection"] == "nmi_zz" and summary["best_head"] == 0
    assert summary["heads"] == [dataclasses.asdict(h) for h in evaluation.heads]
    assert summary["heads_nmi"] == [[round(float(v), 6) for v in row] for row in table]
    assert summary["protocol"] == "" and summary["splits"] == {} and "fit_heads" not in summary
    fitted = synthetic(fit_heads=evaluation.heads[::-1], protocol="fit_on_train: ...", splits={"scored": "test"})
    fitted_summary = fitted.summary()
    fit_heads = fitted_summary["fit_heads"]
    assert isinstance(fit_heads, list) and [h["index"] for h in fit_heads] == [1, 0]
    assert fitted_summary["protocol"] == "fit_on_train: ..." and fitted_summary["splits"] == {"scored": "test"}


def test_epoch_metrics_leave_out_what_has_no_value() -> None:
    labelled = synthetic().epoch_metrics()
    assert labelled["selected_head"] == 0
    assert labelled["heads"] == [dataclasses.asdict(h) for h in synthetic().heads]
    heads = synthetic(labels=None).epoch_metrics()["heads"]
    assert isinstance(heads, list) and len(heads) == 2
    for h in heads:
        assert not {"acc", "nmi", "ari"} & set(h) and {"index", "nmi_zz", "clusters", "clusters_used", "usage_entropy"} <= set(h)


def test_evaluate_on_unlabelled_data(registry) -> None:  # type: ignore[no-untyped-def]
    recipe = load_recipe(QUICKSTART, registry, [*TINY, "eval.selection=best"])
    built = build(recipe, torch.device("cpu"))
    unlabelled = ImageData(built.eval_data.images, None, ())
    result = evaluate(built.model, built.source, unlabelled, batch_size=64, precision="fp32", selection="best")
    assert result.selection == "nmi_zz" and result.best is None and result.confusion(result.selected) is None
    assert len(result.heads) == 2 and all(h.acc is None and math.isfinite(h.nmi_zz) for h in result.heads)
    assert result.selected == max(result.heads, key=lambda h: h.nmi_zz).index
    summary = result.summary()
    assert summary["acc"] is None and summary["selection"] == "nmi_zz"
    labelled = evaluate(built.model, built.source, built.eval_data, batch_size=64, precision="fp32", selection="best")
    assert labelled.selection == "best" and labelled.confusion(labelled.selected).sum() == len(built.eval_data)
    assert labelled.selected == max(labelled.heads, key=lambda h: h.acc).index
    # the label-free scores do not depend on the labels
    assert [h.nmi_zz for h in labelled.heads] == [h.nmi_zz for h in result.heads]


def direct_mapping(labels: np.ndarray, assign: np.ndarray, clusters: int) -> np.ndarray:
    """cluster -> class (-1 = none) maximising agreement, from a confusion table [classes,
    clusters seen] counted here (scipy's assignment solver, as the Hungarian method)."""
    table = np.zeros((int(labels.max()) + 1, int(assign.max()) + 1))
    for c, y in zip(assign, labels, strict=True):
        table[y, c] += 1
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapping = np.full(clusters, -1)
    mapping[cols] = rows
    return mapping


def test_mapping_and_head_fitted_on_one_split_score_another(registry) -> None:  # type: ignore[no-untyped-def]
    """evaluate(scored, fit=other): each head's Hungarian map fitted on the other images scores
    these, and the head is the other images' highest NMI(z, z'). The fitting images' labels are
    shifted by one class, so their mapping cannot be the scored images' own."""
    recipe = load_recipe(QUICKSTART, registry, [*TINY, "head.per_attachment=3"])
    built = build(recipe, torch.device("cpu"))
    data = built.eval_data
    assert data.labels is not None
    scored = ImageData(data.images[:100], data.labels[:100], data.classes)
    fit = ImageData(data.images[100:], (data.labels[100:] + 1) % 10, data.classes)
    kwargs = {"batch_size": 64, "precision": "fp32", "selection": "nmi_zz"}
    alone_scored = evaluate(built.model, built.source, scored, **kwargs)  # type: ignore[arg-type]
    alone_fit = evaluate(built.model, built.source, fit, **kwargs)  # type: ignore[arg-type]
    protocol = resolve_protocol("fit_on_train", "train", "test")
    result = evaluate(built.model, built.source, scored, fit=fit, protocol=protocol, **kwargs)  # type: ignore[arg-type]

    k = built.model.clusters
    assert scored.labels is not None and fit.labels is not None
    for h in range(3):
        mapping = direct_mapping(fit.labels, alone_fit.assignments[h], k)
        expected = float(np.mean(mapping[alone_scored.assignments[h]] == scored.labels))
        assert result.heads[h].acc == pytest.approx(expected)
        assert result.matching(h) == {c: int(y) for c, y in enumerate(mapping) if y >= 0}
        assert result.heads[h].nmi == pytest.approx(normalized_mutual_info_score(scored.labels, alone_scored.assignments[h]))
    assert any(result.heads[h].acc != alone_scored.heads[h].acc for h in range(3))  # not the scored images' own map
    assert result.fit_heads is not None
    assert [h.nmi_zz for h in result.fit_heads] == [h.nmi_zz for h in alone_fit.heads]
    assert result.selected == alone_fit.selected == int(np.argmax([h.nmi_zz for h in alone_fit.heads]))
    summary = result.summary()
    assert summary["protocol"] == protocol.describe() and summary["splits"]["fitted"] == "train"
    assert [h["nmi_zz"] for h in summary["fit_heads"]] == [h.nmi_zz for h in alone_fit.heads]  # type: ignore[index]
    assert alone_scored.summary()["protocol"] == "" and "fit_heads" not in alone_scored.summary()
