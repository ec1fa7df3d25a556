"""bench/encoders.py at its tiniest: a test model through the timm encoder, every field printed.
No timing is asserted."""

from __future__ import annotations

import re

import pytest
import torch

from benchhelp import load_bench


def test_tiny_run_prints_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    try:
        load_bench("encoders").main(["--models", "test_resnet", "--batch", "2", "--batches", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "device: cpu, 1 threads | torch" in out and "batch 2, 32 px decoded images, 1 timed batches" in out
    assert re.search(r"model +input +resize +D +s/batch +embeddings/s", out)
    assert re.search(r"test_resnet +160 +168 +96 +[\d.]+ +[\d,.]+\n", out)
