"""What a run directory records: data.root absolute, the --set of every resume (recipe.toml
and history.jsonl), and files with the permissions the umask leaves."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from corehelp import ROOT
from mihead.recipe import read_toml

FOLDER = ROOT / "recipes" / "folder.toml"
SHRINK = ["data.size=8", 'data.cache=""', "head.clusters=3", "head.per_attachment=2", "train.batch_size=20", "train.max_steps=2", "train.device=cpu"]


def write_images(folder: Path, n: int = 40) -> Path:
    for i in range(n):
        (folder / ("dark" if i % 2 else "bright")).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((10, 10, 3), 60 if i % 2 else 190, np.uint8)).save(folder / ("dark" if i % 2 else "bright") / f"{i:02d}.png")
    return folder


def sets(*items: str) -> list[str]:
    return [arg for item in (*SHRINK, *items) for arg in ("--set", item)]


def read_recipe(run_dir: Path) -> dict[str, Any]:
    return read_toml(run_dir / "recipe.toml")


def test_a_relative_data_root_is_recorded_absolute(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Trained with data.root=imgs; eval and --resume run from another folder find the data."""
    work = tmp_path / "work"
    write_images(work / "imgs")
    monkeypatch.chdir(work)
    code, _, err = run_cli("run", str(FOLDER), "--out", "run", *sets("data.root=imgs"))
    assert code == 0, err
    run_dir = work / "run"
    assert read_recipe(run_dir)["data"]["root"] == str(work / "imgs")
    assert json.loads((run_dir / "summary.json").read_text())["data"] == {"dataset": "image_folder", "root": str(work / "imgs")}
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("eval", str(run_dir))
    assert code == 0, err
    code, _, err = run_cli("run", "--resume", str(run_dir), "--set", "train.max_steps=3")
    assert code == 0, err


def test_resume_records_its_overrides_and_eval_uses_them(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """The data moved: resumed with --set data.root=NEW and more steps, recipe.toml says so,
    history.jsonl keeps each command's overrides, and eval reads the data where it now is."""
    old, new = tmp_path / "old", tmp_path / "new"
    write_images(old)
    run_dir = tmp_path / "run"
    code, _, err = run_cli("run", str(FOLDER), "--out", str(run_dir), *sets(f"data.root={old}"))
    assert code == 0, err
    old.rename(new)
    code, _, err = run_cli("run", "--resume", str(run_dir), "--set", f"data.root={new}", "--set", "train.max_steps=3")
    assert code == 0, err
    recipe = read_recipe(run_dir)
    assert recipe["data"]["root"] == str(new) and recipe["train"]["max_steps"] == 3
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [(h["command"], h["step"], h["set"]) for h in history] == [
        ("run", 0, [*SHRINK, f"data.root={old}"]),
        ("resume", 2, [f"data.root={new}", "train.max_steps=3"]),
    ]
    assert history[0]["recipe"] == str(FOLDER) and history[1]["recipe"] == str(run_dir / "recipe.toml")
    code, _, err = run_cli("eval", str(run_dir))
    assert code == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["data"]["root"] == str(new)


def test_every_file_follows_the_umask(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """The run directory, the image cache and predict's CSV, as any file a user makes: with
    umask 027, folders 0750 and files 0640 (people share run directories)."""
    images = write_images(tmp_path / "images")
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    old = os.umask(0o027)
    try:
        code, _, err = run_cli("run", str(FOLDER), "--out", str(run_dir), *sets(f"data.root={images}", f"data.cache={cache}"))
        assert code == 0, err
        code, _, err = run_cli("predict", str(run_dir), str(images), "--out", str(tmp_path / "clusters.csv"))
        assert code == 0, err
    finally:
        os.umask(old)
    files = [*run_dir.iterdir(), *cache.iterdir(), tmp_path / "clusters.csv"]
    assert {"summary.json", "assignments.csv", "gallery.png", "training.png", "checkpoint.pt", "metrics.jsonl"} <= {p.name for p in files}
    assert any(p.suffix == ".npy" for p in files)
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(0o640) for p in files}
    assert [oct(stat.S_IMODE(d.stat().st_mode)) for d in (run_dir, cache)] == [oct(0o750)] * 2


def test_readme_and_help_texts_name_every_file_of_the_run_directory() -> None:
    """The file list lives in mihead.run_directory; README.md, `mihead run --help` and
    docs/clusters.md (for the files it describes) must not drift from it."""
    from mihead.help_texts import command_help
    from mihead.run_directory import (
        ASSIGNMENTS_FILE,
        CHECKPOINT_FILE,
        EVALUATION_FILES,
        GALLERY_FILE,
        PREVIOUS_CHECKPOINT_FILE,
        RUN_FILES,
        SUMMARY_FILE,
        gallery_file,
    )

    names = [name for name, _ in RUN_FILES] + [gallery_file(2)]
    assert {"heads_nmi.png", "checkpoint.damaged.pt", "history.jsonl"} <= set(names)
    readme = (ROOT / "README.md").read_text()
    run_help = " ".join(command_help("run", "")["description"].split())
    eval_help = " ".join(command_help("eval", "")["description"].split())
    assert [n for n in names if f"`{n}`" not in readme] == []
    assert [n for n in names if n not in run_help] == []
    assert [n for n, _ in EVALUATION_FILES if n not in eval_help] == []
    clusters = (ROOT / "docs" / "clusters.md").read_text()
    described = [ASSIGNMENTS_FILE, GALLERY_FILE, gallery_file(2), SUMMARY_FILE, CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE]
    assert [n for n in described if f"`{n}`" not in clusters] == []


def test_gallery_file_names_and_their_page_numbers() -> None:
    from mihead.run_directory import gallery_file, gallery_page

    assert [gallery_file(p) for p in (1, 2, 10)] == ["gallery.png", "gallery-2.png", "gallery-10.png"]
    assert [gallery_page(n) for n in ("gallery.png", "gallery-2.png", "gallery-10.png", "gallery-x.png", "a-gallery-2.png")] == [None, 2, 10, None, None]


def test_the_model_shape_is_read_back_from_each_kind_of_checkpoint() -> None:
    """Recorded whole, recorded apart (checkpoints written before it was whole: no
    overclusters), or not at all (older still): what is there, for the caller to complete."""
    from mihead.contracts import ImageSpec
    from mihead.run_directory import ModelShape, recorded_shape, shape_record

    shape = ModelShape(ImageSpec(channels=1, size=8), clusters=10, overclusters=50, views_on_device=True)
    assert recorded_shape(shape_record(shape)) == {"image": shape.image, "clusters": 10, "overclusters": 50, "views_on_device": True}
    apart = {"model": {}, "image_spec": {"channels": 3, "size": 16}, "clusters": 4, "views_on_device": False}
    assert recorded_shape(apart) == {"image": ImageSpec(channels=3, size=16), "clusters": 4, "views_on_device": False}
    assert recorded_shape({"model": {}, "step": 3}) == {}
