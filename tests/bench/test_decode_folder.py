"""bench/decode_folder.py at its tiniest: the folder holds every kind of file it promises,
and a run prints every row. No timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from benchhelp import load_bench


def test_tiny_folder_and_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench("decode_folder")
    paths = bench.make_folder(tmp_path, 14)
    modes = sorted({Image.open(p).mode for p in paths})
    assert len(paths) == 14 and modes == ["I;16", "L", "P", "RGB", "RGBA"]
    bench.main(["--images", "14", "--folder", str(tmp_path), "--workers", "2", "--size", "16"])
    out = capsys.readouterr().out
    assert "14 images to 16x16x3, 2 workers" in out
    for row in ("1 worker", "2 threads", "2 processes", "cache miss", "cache hit"):
        assert row in out
