"""bench/quickstart_spread.py's row: the chosen head, how close the choice was (the two highest
NMI(z, z')), the best head by labels, and the first epoch's loss, under the header's columns."""

from __future__ import annotations

import re

from benchhelp import load_bench


def test_row_lines_up_with_the_header() -> None:
    bench = load_bench("quickstart_spread")
    heads = [{"index": i, "acc": acc, "nmi_zz": zz} for i, (acc, zz) in enumerate([(0.90, 0.921), (0.955, 0.9258), (0.87, 0.913), (0.909, 0.9305)])]
    summary = {"selected_head": 3, "acc": 0.909, "nmi": 0.892, "heads": heads, "seconds": 394.1}
    line = bench.row(0, 1, "avx2", {"summary": summary, "first_loss": -2.5432369709014893})
    assert line.split() == ["0", "1", "avx2", "3", "0.909", "0.892", "0.9305", "0.9258", "1", "0.955", "-2.54323697", "394"]
    assert len(line) == len(bench.HEADER)
    assert [line[: m.end()].split()[-1] for m in re.finditer(r"\S+", bench.HEADER)] == line.split()  # each value ends under its column name
