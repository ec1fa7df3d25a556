"""Evaluation protocols: the splits each role uses, the union of splits, and a mapping and head
fitted on one split scoring another, against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import normalized_mutual_info_score

from mihead.contracts import ImageData
from mihead.errors import DataError
from mihead.protocol import resolve_protocol, union_data


def _data(n: int, first_label: int = 0, size: int = 4, ids: tuple[str, ...] | None = None) -> ImageData:
    images = np.arange(n * size * size, dtype=np.int64).reshape(n, size, size, 1).astype(np.uint8)
    labels = (np.arange(n) + first_label) % 3
    return ImageData(images, labels, ("a", "b", "c"), ids)


@pytest.mark.parametrize(
    ("name", "roles", "text"),
    [
        ("split", ("train", "test", "test"), "split: mapping fitted and head chosen on test, scored on test; trained on train"),
        ("fit_on_train", ("train", "train", "test"), "fit_on_train: mapping fitted and head chosen on train, scored on test; trained on train"),
        ("union", ("train+test", "train+test", "train+test"), "union: mapping fitted and head chosen on train+test, scored on train+test; trained on train+test"),
    ],
)
def test_roles_and_description(name: str, roles: tuple[str, str, str], text: str) -> None:
    protocol = resolve_protocol(name, "train", "test")
    assert (protocol.trained, protocol.fitted, protocol.scored) == roles
    assert protocol.describe() == text
    assert protocol.splits() == dict(zip(("trained", "fitted", "scored"), roles, strict=True))


def test_one_split_is_its_own_union_and_an_unlabelled_fit_is_said() -> None:
    assert resolve_protocol("union", "all", "all").trained == "all"
    fit = resolve_protocol("fit_on_train", "train+unlabeled", "test")
    assert fit.describe(fit_labelled=False) == (
        "fit_on_train: head chosen on train+unlabeled (unlabelled), mapping fitted on test, scored on test; trained on train+unlabeled"
    )


def test_union_concatenates_and_prefixes_ids() -> None:
    joined = union_data([("train", _data(3)), ("test", _data(2, first_label=1, ids=("x.png", "y.png")))])
    assert joined.ids == ("train/0", "train/1", "train/2", "test/x.png", "test/y.png")
    assert joined.labels is not None and joined.labels.tolist() == [0, 1, 2, 1, 2]
    assert len(set(joined.sample_ids())) == len(joined) == 5
    np.testing.assert_array_equal(joined.images[3:], _data(2).images)
    unlabelled = ImageData(_data(2).images, None, ("a", "b", "c"))
    assert union_data([("train", _data(3)), ("u", unlabelled)]).labels is None


def test_union_of_different_images_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="split 'test' has images of shape"):
        union_data([("train", _data(3)), ("test", _data(2, size=5))])
    other = ImageData(_data(2).images, np.zeros(2, dtype=np.int64), ("x",))
    with pytest.raises(DataError, match="name different classes"):
        union_data([("train", _data(3)), ("test", other)])


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
    from corehelp import QUICKSTART, TINY
    from mihead.build import build
    from mihead.evaluate import evaluate
    from mihead.recipe import load_recipe

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


def test_paper_recipes_protocols(registry, cifar10_root) -> None:  # type: ignore[no-untyped-def]
    """DCCM's recipe trains on, fits and scores train and test together (ids kept apart);
    DHOG's fits on the training split and scores the test split."""
    from corehelp import ROOT
    from mihead.build import build
    from mihead.evaluate import evaluate_run
    from mihead.recipe import load_recipe

    overrides = [
        f"data.root={str(cifar10_root)!r}", "data.verify=false", "data.limit=30", "train.batch_size=10", "train.device='cpu'",
        "train.num_workers=0", "eval.batch_size=64",
    ]
    dccm = load_recipe(ROOT / "recipes" / "dccm_cifar10.toml", registry, overrides)
    union = build(dccm, torch.device("cpu"))
    assert dccm.eval.protocol == "union"
    assert union.train_data is union.eval_data is union.fit_data and len(union.train_data) == 60
    ids = union.train_data.sample_ids()
    assert ids[:2] == ["train/0", "train/1"] and ids[30] == "test/0" and len(set(ids)) == 60
    assert union.source.steps_per_epoch == 6
    assert evaluate_run(union, dccm).splits == {"trained": "train+test", "fitted": "train+test", "scored": "train+test"}

    dhog = load_recipe(ROOT / "recipes" / "dhog_cifar10.toml", registry, [*overrides, "backbone.width=0.125", "backbone.final_copies=1"])
    built = build(dhog, torch.device("cpu"))
    assert dhog.eval.protocol == "fit_on_train" and built.fit_data is built.train_data and len(built.eval_data) == 30
    evaluation = evaluate_run(built, dhog)
    assert evaluation.fit_heads is not None and evaluation.mappings is not None and len(evaluation.ids) == 30
    assert evaluation.splits == {"trained": "train", "fitted": "train", "scored": "test"}
