"""Evaluation protocols: the splits each role uses, the union of splits, and the paper recipes'
protocols (a mapping and head fitted on one split scoring another: tests/core/test_evaluate.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
