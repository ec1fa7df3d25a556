"""``mihead predict``: a run's own evaluation images, written as files, get the clusters its
assignments.csv gives them; bad files, --skip-bad, --out, --head, and runs from elsewhere."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from corehelp import diverged_copy, error_line

Rows = list[dict[str, str]]


def parse(text: str) -> Rows:
    return list(csv.DictReader(io.StringIO(text)))


def read_csv(path: Path) -> Rows:
    return parse(path.read_text())


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's 200 evaluation digits as 8x8 grey PNGs named by id, in nested folders."""
    root = tmp_path_factory.mktemp("digit-files")
    images = np.round(load_digits().images[:200] * (255 / 16)).astype(np.uint8)
    for i, image in enumerate(images):
        folder = root / ("a" if i < 100 else "b/c")  # recursion into subfolders
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return root


def by_id(rows: Rows) -> dict[str, dict[str, str]]:
    return {str(int(Path(r["path"]).stem)): r for r in rows}


def check_reproduces(predicted: Rows, run_dir: Path, head: int) -> None:
    """``predicted`` gives each image the clusters (and confidence) of assignments.csv."""
    run = read_csv(run_dir / "assignments.csv")
    heads = len(json.loads((run_dir / "summary.json").read_text())["heads"])
    assert list(predicted[0]) == ["path", "cluster", "confidence", *[f"head_{h}" for h in range(heads)]]
    assert len(predicted) == len(run) == 200
    mine = by_id(predicted)
    for row in run:
        got = mine[row["id"]]
        assert [got[f"head_{h}"] for h in range(heads)] == [row[f"head_{h}"] for h in range(heads)], row["id"]
        assert got["cluster"] == row[f"head_{head}"]
    reported = json.loads((run_dir / "summary.json").read_text())["selected_head"]
    if head == reported:
        assert [float(mine[r["id"]]["confidence"]) for r in run] == pytest.approx([float(r["confidence"]) for r in run], abs=2e-6)


def test_predict_reproduces_the_runs_assignments(digits_run: Path, digit_files: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_cli("predict", str(digits_run), str(digit_files))
    assert code == 0, err
    rows = parse(out)
    assert [r["path"] for r in rows] == sorted(str(p) for p in digit_files.rglob("*.png"))
    check_reproduces(rows, digits_run, json.loads((digits_run / "summary.json").read_text())["selected_head"])
    # files given one by one, and another head
    files = sorted(digit_files.rglob("*.png"))
    code, out, err = run_cli("predict", str(digits_run), *map(str, files[:5]), "--head", "1")
    assert code == 0, err
    assert [r["path"] for r in parse(out)] == [str(p) for p in files[:5]]
    assert all(r["cluster"] == r["head_1"] for r in parse(out))


def test_predict_out_file_with_progress(digits_run: Path, digit_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli) -> None:  # type: ignore[no-untyped-def]
    from mihead import predict

    monkeypatch.setattr(predict, "LONG_INPUT", 200)  # 200 files count as a long input
    out_file = tmp_path / "clusters.csv"
    code, out, err = run_cli("predict", str(digits_run), str(digit_files), "--out", str(out_file), "--head", "0")
    assert code == 0, err
    assert str(out_file) in " ".join(out.split())  # what it did is a result: stdout
    assert "decoding" in err and "assigning" in err and "200/200" in err  # the progress bars, on stderr
    check_reproduces(read_csv(out_file), digits_run, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clusters.csv"]


def test_a_corrupt_file_stops_with_its_name_and_no_output(digit_files: Path, digits_run: Path, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    images = tmp_path / "images"
    shutil.copytree(digit_files, images)
    bad = images / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 10)
    out_file = tmp_path / "clusters.csv"
    code, out, err = run_cli("predict", str(digits_run), str(images), "--out", str(out_file))
    assert code == 2 and out == ""
    assert str(bad) in error_line(err)
    assert not out_file.exists() and not list(tmp_path.glob(".*"))  # no partial or temporary file
    out_file.write_text("kept")
    assert run_cli("predict", str(digits_run), str(images), "--out", str(out_file))[0] == 2
    assert out_file.read_text() == "kept"  # what was there is not lost

    code, out, err = run_cli("predict", str(digits_run), str(images), "--skip-bad")
    assert code == 0, err
    assert f"skipped {bad}:" in " ".join(err.split())
    rows = parse(out)
    assert str(bad) not in {r["path"] for r in rows}
    check_reproduces(rows, digits_run, json.loads((digits_run / "summary.json").read_text())["selected_head"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--head", "2"], "--head 2: the run has heads 0 to 1"),
        (["--head", "-1"], "--head -1: the run has heads 0 to 1"),
        (["--out", "/no/such/folder/x.csv"], "--out /no/such/folder/x.csv: no such folder /no/such/folder"),
    ],
)
def test_bad_arguments(digits_run: Path, digit_files: Path, run_cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_cli("predict", str(digits_run), str(digit_files), *args)
    assert code == 2 and out == "" and message in error_line(err)


def test_bad_inputs(digits_run: Path, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli("predict", str(tmp_path), str(tmp_path))
    assert code == 2 and f"{tmp_path}: not a run directory" in error_line(err)
    code, _, err = run_cli("predict", str(digits_run), str(tmp_path / "absent"))
    assert code == 2 and f"{tmp_path / 'absent'}: no such file or folder" in error_line(err)
    (tmp_path / "notes.txt").write_text("no images here")
    code, _, err = run_cli("predict", str(digits_run), str(tmp_path))
    assert code == 2 and f"no image files in {tmp_path}" in error_line(err)


def test_a_run_from_a_cuda_machine_or_an_older_checkpoint(digits_run: Path, digit_files: Path, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """A recipe that trained on CUDA predicts and evaluates on the CPU (--device cpu, and auto
    here); a checkpoint without the recorded image spec falls back to the dataset's declared
    one."""
    run_dir = tmp_path / "run"
    shutil.copytree(digits_run, run_dir)
    recipe = (run_dir / "recipe.toml").read_text()
    assert 'device = "cpu"' in recipe
    (run_dir / "recipe.toml").write_text(recipe.replace('device = "cpu"', 'device = "cuda"'))
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    shape = state["model_shape"]
    assert shape["image"] == {"channels": 1, "size": 8} and shape["clusters"] == 10
    assert shape["views_on_device"] is True  # small_affine batches its views, on the CPU here
    del state["model_shape"]
    torch.save(state, run_dir / "checkpoint.pt")
    head = json.loads((run_dir / "summary.json").read_text())["selected_head"]
    for device in ("cpu", "auto"):
        code, out, err = run_cli("predict", str(run_dir), str(digit_files), "--device", device)
        assert code == 0, err
        check_reproduces(parse(out), digits_run, head)
    code, out, err = run_cli("eval", str(run_dir))
    assert code == 0, err
    assert json.loads((run_dir / "summary.json").read_text())["device"] == "cpu"
    if not torch.cuda.is_available():
        for command in ("predict", "eval"):
            paths = [str(digit_files)] if command == "predict" else []
            code, _, err = run_cli(command, str(run_dir), *paths, "--device", "cuda")
            assert code == 2 and "--device: 'cuda' was asked for but no CUDA device is available" in error_line(err)


def test_a_checkpoint_recording_the_shape_apart_still_predicts(digits_run: Path, digit_files: Path, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """A checkpoint written before the shape was recorded whole (image_spec, clusters and
    views_on_device as keys of their own) predicts as the run assigned, from those keys: its
    recipe no longer says K, nor does the dataset's class count give the run's."""
    run_dir = tmp_path / "run"
    shutil.copytree(digits_run, run_dir)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    shape = state.pop("model_shape")
    state.update(image_spec=shape["image"], clusters=shape["clusters"], views_on_device=shape["views_on_device"])
    torch.save(state, run_dir / "checkpoint.pt")
    recipe = (run_dir / "recipe.toml").read_text()
    assert re.search(r"^clusters = 0$", recipe, re.MULTILINE)  # the dataset's ten classes
    (run_dir / "recipe.toml").write_text(re.sub(r"^clusters = 0$", "clusters = 7", recipe, flags=re.MULTILINE))
    code, out, err = run_cli("predict", str(run_dir), str(digit_files))
    assert code == 0, err
    check_reproduces(parse(out), digits_run, json.loads((run_dir / "summary.json").read_text())["selected_head"])


def test_an_unfinished_run_needs_a_head(digits_run: Path, digit_files: Path, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "run"
    shutil.copytree(digits_run, run_dir)
    (run_dir / "summary.json").unlink()
    code, _, err = run_cli("predict", str(run_dir), str(digit_files))
    assert code == 2 and "no summary.json" in error_line(err) and "--head N" in err
    code, out, err = run_cli("predict", str(run_dir), str(digit_files), "--head", "1")
    assert code == 0, err
    check_reproduces(parse(out), digits_run, 1)


def write_mixed_folder(root: Path, n: int = 60) -> None:
    """Class subfolders (with a nested one) of PNGs in every mode a user's folder holds (RGB,
    grey, RGBA, palette, 16-bit grey), of sizes that need resizing and cropping."""
    rng = np.random.default_rng(0)
    modes = ["RGB", "L", "RGBA", "P", "I;16"]
    for i in range(n):
        folder = root / ("bright" if i % 2 else "dark") / ("deep" if i % 3 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        base = 170 if i % 2 else 60
        pixels = np.clip(base + rng.normal(0, 40, (20 + i % 5, 24, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        mode = modes[i % len(modes)]
        if mode == "I;16":
            image = Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)
        elif mode == "P":
            image = image.convert("P", palette=Image.Palette.ADAPTIVE)
        else:
            image = image.convert(mode)
        image.save(folder / f"{i:02d}.png")


def test_predict_on_an_image_folder_run_gives_its_assignments_by_path(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """recipes/folder.toml on a folder of mixed-mode images: predict, reading the files again,
    gives each file (its path relative to data.root is its id) the run's clusters."""
    from corehelp import ROOT

    root = tmp_path / "images"
    write_mixed_folder(root)
    run_dir = tmp_path / "run"
    shrink = ["data.size=16", 'data.cache=""', "head.clusters=3", "head.per_attachment=2", "train.batch_size=30", "train.max_steps=2", "train.device=cpu"]
    sets = [a for s in [f"data.root={root}", *shrink] for a in ("--set", s)]
    code, _, err = run_cli("run", str(ROOT / "recipes" / "folder.toml"), "--out", str(run_dir), *sets)
    assert code == 0, err
    run = read_csv(run_dir / "assignments.csv")
    assert sorted(r["id"] for r in run) == sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
    assert {r["label"] for r in run} == {"bright", "dark"}
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["model_shape"]["image"] == {"channels": 3, "size": 16}  # mixed: colour
    code, out, err = run_cli("predict", str(run_dir), str(root))
    assert code == 0, err
    predicted = {str(Path(r["path"]).relative_to(root)): r for r in parse(out)}
    assert len(predicted) == len(run) == 60
    for row in run:
        got = predicted[row["id"]]
        assert (got["cluster"], got["head_0"], got["head_1"]) == (row["cluster"], row["head_0"], row["head_1"]), row["id"]
        assert float(got["confidence"]) == pytest.approx(float(row["confidence"]), abs=2e-6)


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(digits_run: Path, digit_files: Path, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """As resume and eval do, with the same warning, and without touching the run's files."""
    run_dir = Path(shutil.copytree(digits_run, tmp_path / "run"))
    (run_dir / "checkpoint.pt").write_bytes(b"\x00garbage" * 64)
    code, out, err = run_cli("predict", str(run_dir), str(digit_files))
    assert code == 0, err
    warning = " ".join(err.split())
    assert f"mihead: warning: {run_dir / 'checkpoint.pt'}: truncated or corrupt checkpoint" in warning
    assert f"using the previous checkpoint {run_dir / 'checkpoint.prev.pt'}" in warning
    assert len(parse(out)) == 200
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in digits_run.iterdir())


def test_non_finite_outputs_stop_predict_with_no_csv(digits_run: Path, digit_files: Path, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    run_dir = diverged_copy(digits_run, tmp_path / "run")
    out_file = tmp_path / "clusters.csv"
    for args in ([], ["--out", str(out_file)]):
        code, out, err = run_cli("predict", str(run_dir), str(digit_files), *args)
        assert code == 1 and out == "" and "nan" not in out
        assert "cluster probabilities are non-finite for 200 of 200 images" in error_line(err)
    assert not out_file.exists()
