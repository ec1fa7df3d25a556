"""The run directory's outputs (mihead/outputs): assignments.csv recomputes the summary's
scores on its own, cluster usage, the gallery's layout and files, ``mihead eval --head N``."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scipy.optimize import linear_sum_assignment
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from corehelp import diverged_copy, error_line
from mihead.evaluate import Evaluation
from mihead.metrics import HeadResult, head_result
from mihead.outputs import write_outputs
from mihead.outputs.gallery import MAX_ROWS, gallery_pages, gallery_rows, thumb_side, write_gallery


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def summary_of(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())  # type: ignore[no-any-return]


def accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """ACC under the best one-to-one cluster -> class map, straight from scipy."""
    table = np.zeros((labels.max() + 1, clusters.max() + 1))
    np.add.at(table, (labels, clusters), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(labels))


def test_assignments_csv_recomputes_the_summary(digits_run: Path) -> None:
    rows = read_csv(digits_run / "assignments.csv")
    summary = summary_of(digits_run)
    heads = len(summary["heads"])
    assert list(rows[0]) == ["id", "label", "cluster", "confidence", *[f"head_{h}" for h in range(heads)], "matched_class", "cluster_size"]
    digits = load_digits()
    assert [r["id"] for r in rows] == [str(i) for i in range(200)]  # one row per evaluation image: data.limit = 200
    assert [r["label"] for r in rows] == [str(digits.target[int(r["id"])]) for r in rows]  # ids map back to the images
    labels = np.array([int(r["label"]) for r in rows])
    for h in range(heads):
        clusters = np.array([int(r[f"head_{h}"]) for r in rows])
        scores = summary["heads"][h]
        assert accuracy(labels, clusters) == pytest.approx(scores["acc"], abs=1e-12)
        assert normalized_mutual_info_score(labels, clusters) == pytest.approx(scores["nmi"], abs=1e-12)
        assert adjusted_rand_score(labels, clusters) == pytest.approx(scores["ari"], abs=1e-12)
        sizes = np.bincount(clusters)
        share = sizes[sizes > 0] / len(clusters)
        assert scores["clusters_used"] == len(set(clusters.tolist())) and scores["clusters"] == 10
        assert scores["usage_entropy"] == pytest.approx(-(share * np.log(share)).sum() / np.log(10))
    chosen = np.array([int(r["cluster"]) for r in rows])
    assert chosen.tolist() == [int(r[f"head_{summary['selected_head']}"]) for r in rows]  # the reported head
    assert accuracy(labels, chosen) == pytest.approx(summary["acc"], abs=1e-12)
    assert normalized_mutual_info_score(labels, chosen) == pytest.approx(summary["nmi"], abs=1e-12)
    # the matched class is the Hungarian matching's: ACC is the share of rows whose label it is
    assert np.mean([r["matched_class"] == r["label"] for r in rows]) == pytest.approx(summary["acc"], abs=1e-12)
    matched = {r["cluster"]: r["matched_class"] for r in rows}
    assert all(matched[r["cluster"]] == r["matched_class"] for r in rows)  # one class per cluster
    assert len({c for c in matched.values() if c}) == len([c for c in matched.values() if c])  # ... and one cluster per class
    assert all(int(r["cluster_size"]) == int((chosen == int(r["cluster"])).sum()) for r in rows)
    assert all(0.0 < float(r["confidence"]) <= 1.0 for r in rows)


def test_results_table_shows_cluster_usage(digits_run: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    work = Path(str(digits_run) + "-table")
    shutil.copytree(digits_run, work)
    code, out, err = run_cli("eval", str(work))
    assert code == 0, err
    scores = summary_of(work)["heads"][0]
    assert "used" in out and "H/logK" in out  # the table is a result: stdout
    assert f"{scores['clusters_used']}/10" in out and f"{scores['usage_entropy']:.2f}" in out


def evaluation_of(run_dir: Path, shown: int | None = None) -> Evaluation:
    """The run's Evaluation rebuilt from its assignments.csv (which shows head ``shown``,
    default the reported one) and summary.json alone."""
    rows = read_csv(run_dir / "assignments.csv")
    summary = summary_of(run_dir)
    heads = [HeadResult(**h) for h in summary["heads"]]
    assignments = np.array([[int(r[f"head_{h}"]) for r in rows] for h in range(len(heads))])
    confidence = np.zeros(assignments.shape, np.float32)
    confidence[summary["selected_head"] if shown is None else shown] = [float(r["confidence"]) for r in rows]
    labels = np.array([int(r["label"]) for r in rows])
    classes = tuple(str(c) for c in range(10))
    return Evaluation(heads, summary["selected_head"], summary["selection"], summary["best_head"], assignments, confidence, tuple(r["id"] for r in rows), labels, classes)


def test_gallery_has_one_row_per_non_empty_cluster(digits_run: Path) -> None:
    evaluation = evaluation_of(digits_run)
    head = evaluation.selected
    clusters, confidence, labels = evaluation.assignments[head], evaluation.confidence[head], evaluation.labels
    assert labels is not None
    rows = gallery_rows(evaluation, head, 12)
    sizes = np.bincount(clusters, minlength=10)
    assert sorted(r.cluster for r in rows) == np.flatnonzero(sizes).tolist()
    assert [r.size for r in rows] == sorted(sizes[sizes > 0].tolist(), reverse=True)  # largest first
    matching = evaluation.matching(head)
    for row in rows:
        assert row.size == sizes[row.cluster]
        assert len(row.images) == min(12, row.size) and all(clusters[i] == row.cluster for i in row.images)
        shown = confidence[list(row.images)]
        rest = confidence[(clusters == row.cluster) & ~np.isin(np.arange(len(clusters)), row.images)]
        assert (np.diff(shown) <= 0).all() and (rest.size == 0 or rest.max() <= shown.min())  # the most confident
        counts = np.bincount(labels[clusters == row.cluster])
        assert row.purity == pytest.approx(counts.max() / row.size) and row.majority == str(counts.argmax())
        assert row.matched_class == (str(matching[row.cluster]) if row.cluster in matching else "")
        assert row.correct == tuple(bool(labels[i] == matching.get(row.cluster)) for i in row.images)
    # the run's own gallery.png is this layout: one file, one row per non-empty cluster
    (page,) = gallery_pages(digits_run, rows, 12, 8)
    assert page.path == digits_run / "gallery.png" and page.rows == rows
    with Image.open(digits_run / "gallery.png") as png:
        assert png.size == (page.width, page.height) and png.mode == "RGB"
    assert not list(digits_run.glob("gallery-*.png"))
    assert thumb_side(8) == 64 and thumb_side(32) == 64 and thumb_side(28) == 84 and thumb_side(96) == 96 and thumb_side(224) == 96


def synthetic_evaluation(n: int, clusters: int, labelled: bool, seed: int = 0) -> Evaluation:
    """An Evaluation of ``n`` images over ``clusters`` clusters of very unequal sizes (some empty)."""
    rng = np.random.default_rng(seed)
    sizes = rng.dirichlet(np.full(clusters, 0.7))
    assign = rng.choice(clusters, n, p=sizes)
    confidence = rng.random((1, n)).astype(np.float32)
    labels = (assign % 10 + (rng.random(n) < 0.3) * rng.integers(0, 10, n)) % 10 if labelled else None
    result = head_result(0, assign, assign, assign, labels, clusters)
    return Evaluation([result], 0, "nmi_zz", None, assign[None], confidence, tuple(map(str, range(n))), labels, tuple(f"class {c}" for c in range(10)))


@pytest.mark.parametrize("labelled", [True, False])
def test_a_gallery_of_many_clusters_is_split_into_files_of_a_few_mb(tmp_path: Path, labelled: bool) -> None:
    evaluation = synthetic_evaluation(4000, 100, labelled)
    images = np.random.default_rng(1).integers(0, 256, (4000, 32, 32, 3), dtype=np.uint8)  # noise: the worst case for PNG
    pages = write_gallery(tmp_path, evaluation, images, 0, 12)
    used = evaluation.heads[0].clusters_used
    assert used > 60 and len(pages) == -(-used // MAX_ROWS)  # 25 clusters a file
    assert [p.path.name for p in pages] == ["gallery.png", *[f"gallery-{k}.png" for k in range(2, len(pages) + 1)]]
    assert [r.cluster for p in pages for r in p.rows] == [r.cluster for r in gallery_rows(evaluation, 0, 12)]
    for page in pages:
        assert page.path.stat().st_size < 5_000_000
        with Image.open(page.path) as png:
            assert png.size == (page.width, page.height)
    assert all(r.matched_class is None and r.purity is None for p in pages for r in p.rows) != labelled
    # rewritten with fewer clusters, the files of the longer gallery go
    fewer = synthetic_evaluation(300, 10, labelled)
    assert len(write_gallery(tmp_path, fewer, images[:300], 0, 12)) == 1
    assert sorted(p.name for p in tmp_path.glob("gallery*.png")) == ["gallery.png"]


def test_a_report_matches_each_shown_head_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The confusion plot, assignments.csv and the gallery share one Hungarian matching."""
    import mihead.evaluate

    calls: list[int] = []
    matching = mihead.evaluate.best_matching

    def counting(labels: np.ndarray, assignments: np.ndarray) -> dict[int, int]:
        calls.append(len(assignments))
        return matching(labels, assignments)

    monkeypatch.setattr(mihead.evaluate, "best_matching", counting)
    evaluation = synthetic_evaluation(300, 12, labelled=True)
    images = np.zeros((300, 8, 8, 3), np.uint8)
    write_outputs(tmp_path, evaluation, images, {})
    assert calls == [300]  # head 0, shown and reported: once, for three files
    assert evaluation.labels is not None
    expected = matching(evaluation.labels, evaluation.assignments[0])
    for row in read_csv(tmp_path / "assignments.csv"):  # ... and the same map as before
        assert row["matched_class"] == (f"class {expected[int(row['cluster'])]}" if int(row["cluster"]) in expected else "")


def test_grey_and_colour_images_are_shown_in_their_colours(tmp_path: Path) -> None:
    evaluation = synthetic_evaluation(50, 3, labelled=False)
    grey = np.full((50, 8, 8, 1), 200, np.uint8)
    grey[:, :4] = 0  # top half black
    (page,) = write_gallery(tmp_path, evaluation, grey, 0, 4)
    with Image.open(page.path) as png:
        pixels = np.asarray(png.convert("RGB"))
    top = 3 * 17 + 2 * 4  # the header
    x = 190 + 4
    thumb = pixels[top + 4 : top + 4 + 64, x : x + 64]
    assert (thumb[:32] == 0).all() and (thumb[32:] == 200).all()  # 8x8 enlarged 8 times by whole pixels, grey
    colour = np.zeros((50, 32, 32, 3), np.uint8)
    colour[..., 0] = 255  # red
    write_gallery(tmp_path, evaluation, colour, 0, 4)
    with Image.open(page.path) as png:
        thumb = np.asarray(png.convert("RGB"))[top + 4 : top + 4 + 64, x : x + 64]
    assert (thumb == [255, 0, 0]).all()


def test_eval_head_writes_the_csv_and_gallery_of_that_head(digits_run: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    work = Path(str(digits_run) + "-head")
    shutil.copytree(digits_run, work)
    other = 1 - summary_of(work)["selected_head"]
    before = summary_of(work)
    code, out, err = run_cli("eval", str(work), "--head", str(other))
    assert code == 0, err
    assert f"assignments.csv and gallery.png: head {other}" in " ".join(out.split())
    rows = read_csv(work / "assignments.csv")
    assert [r["cluster"] for r in rows] == [r[f"head_{other}"] for r in rows]
    labels = np.array([int(r["label"]) for r in rows])
    assert np.mean([r["matched_class"] == r["label"] for r in rows]) == pytest.approx(summary_of(work)["heads"][other]["acc"])
    assert accuracy(labels, np.array([int(r["cluster"]) for r in rows])) == pytest.approx(summary_of(work)["heads"][other]["acc"])
    assert summary_of(work)["selected_head"] == before["selected_head"]  # the reported head stays the selection's
    with Image.open(work / "gallery.png") as png:
        height = png.size[1]
    rows_drawn = gallery_rows(evaluation_of(work, other), other, 12)
    assert height == gallery_pages(work, rows_drawn, 12, 8)[0].height

    written = {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()}
    code, _, err = run_cli("eval", str(work), "--head", "2")
    assert code == 2 and "--head 2: the run has heads 0 to 1" in error_line(err)
    assert {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()} == written


def test_eval_gallery_images_sets_the_images_per_row(digits_run: Path, run_cli, registry) -> None:  # type: ignore[no-untyped-def]
    from mihead.errors import RecipeError
    from mihead.recipe import load_recipe

    work = Path(str(digits_run) + "-three")
    shutil.copytree(digits_run, work)
    recipe = work / "recipe.toml"
    assert "gallery_images = 12" in recipe.read_text()
    recipe.write_text(recipe.read_text().replace("gallery_images = 12", "gallery_images = 3"))
    code, _, err = run_cli("eval", str(work))
    assert code == 0, err
    rows = gallery_rows(evaluation_of(work), summary_of(work)["selected_head"], 3)
    assert max(len(r.images) for r in rows) == 3
    with Image.open(work / "gallery.png") as png:
        assert png.size == (gallery_pages(work, rows, 3, 8)[0].width, gallery_pages(work, rows, 3, 8)[0].height)
    with pytest.raises(RecipeError, match="gallery_images"):
        load_recipe(recipe, registry, ["eval.gallery_images=51"])


def test_eval_of_non_finite_outputs_stops_and_writes_nothing(digits_run: Path, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    run_dir = diverged_copy(digits_run, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.suffix in (".csv", ".json", ".png")}
    code, out, err = run_cli("eval", str(run_dir))
    assert code == 1 and out == ""
    assert error_line(err).endswith("the model's cluster probabilities are non-finite for 200 of 200 images (its weights diverged, or its activations overflow on them); nothing was assigned")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.suffix in (".csv", ".json", ".png")} == before
