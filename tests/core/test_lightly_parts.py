"""Without lightly installed (hidden here), a frozen-encoder run still scores and writes its
outputs: the kNN accuracy and embeddings.csv are left out with one warning line each."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest

from mihead import lightly_parts
from mihead.knn import knn_accuracy


@pytest.fixture
def no_lightly(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [m for m in sys.modules if m == "lightly" or m.startswith("lightly.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "lightly", None)  # import lightly raises ImportError
    lightly_parts._lightly.cache_clear()
    yield
    lightly_parts._lightly.cache_clear()


def test_the_knn_accuracy_is_left_out_with_a_warning(no_lightly: None, capsys: pytest.CaptureFixture[str]) -> None:
    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    assert knn_accuracy(x, np.arange(20) % 2) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the encoder's kNN accuracy left out" in err[0] and "pip install lightly" in err[0]


def test_the_embeddings_writer_is_left_out_with_a_warning(no_lightly: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert lightly_parts.save_embeddings() is None
    assert lightly_parts.save_embeddings() is None  # warned once
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "embeddings.csv left out" in err[0]


def test_with_lightly_both_are_lightly_s() -> None:
    from lightly.utils.benchmarking import knn_predict
    from lightly.utils.io import save_embeddings

    assert lightly_parts.save_embeddings() is save_embeddings and lightly_parts.knn_predict() is knn_predict
