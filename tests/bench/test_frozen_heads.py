"""bench/frozen_heads.py at its tiniest: it mines, trains an epoch of heads on a memory-mapped
table and prints every line. No timing is asserted."""

from __future__ import annotations

import re

import pytest
import torch

from benchhelp import load_bench


def test_tiny_run_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    try:
        load_bench("frozen_heads").main(["--n", "600", "--dims", "32", "--k", "5", "--heads", "2", "--hidden", "0", "16", "--batch", "100", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert re.search(r"mining 600 x 32: [\d.]+ s", out)
    for kind in ("linear", "hidden 16"):
        assert re.search(rf"head epoch, 2 {kind} heads on 600 x 768 \(batch 100, 6 steps, 2 views\): [\d.]+ s \([\d,]+ embeddings/s\)", out)
