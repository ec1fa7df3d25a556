"""bench/scale.py at its tiniest: a folder of 2,000 JPEGs, a store of 5,000 entries, a run in
one process and one of 2 gloo ranks, an evaluation; every line is printed. No figure is asserted."""

from __future__ import annotations

import re

import pytest

from benchhelp import load_bench


@pytest.mark.slow
def test_tiny_run_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    load_bench("scale").main(["--images", "2000", "--store", "5000", "--ranks", "2", "--eval-ranks", "1", "--steps", "1", "--batch", "32"])
    out = capsys.readouterr().out
    for workers, images in ((1, "2,000"), (2, "500"), (2, "2,000")):
        assert re.search(rf"decode +{images} images, {workers} workers?: +[\d,]+ images/s; private memory [\d,]+ MiB before, peak [+-][\d,]+ MiB", out)
    assert re.search(r"store of 5,000 entries \([\d.]+ GiB\) written in [\d.]+ s", out)
    assert re.search(r"mapped it and read 200 random batches of 256 in [\d.]+ s: private memory [+-][\d.]+ MiB after mapping", out)
    assert re.search(r"run, 200 images, 1 rank \(1 step of 32 per rank, .*\): [\d.]+ s; job total [\d,]+ MiB", out)
    assert re.search(r"run, 2,000 images, 2 ranks .*\n    rank 0: private [\d,]+ MiB, Pss [\d,]+ MiB, with its loader workers [\d,]+ MiB\n    rank 1: ", out)
    assert re.search(r"mihead eval of 2,000 images, 1 rank: [\d.]+ s", out)
