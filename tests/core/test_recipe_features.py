"""A recipe whose objective needs a backbone feature its backbone lacks fails at check time,
before anything is built, with one line naming the objective, the features and the backbone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mihead import cli
from mihead.errors import RecipeError
from mihead.plugins import load_registry
from mihead.recipe import load_recipe

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.toml"


def recipe_with(tmp_path: Path, backbone: str, objective: str) -> Path:
    # the quickstart's [backbone] section with only its name kept: other keys are smallcnn's
    text = re.sub(r"\[backbone\]\n(?:.+\n)*", f'[backbone]\nname = "{backbone}"\n', QUICKSTART.read_text())
    text += f'\n[[objective]]\nname = "{objective}"\nweight = 0.1\n'
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def test_missing_feature_is_named(tmp_path: Path) -> None:
    path = recipe_with(tmp_path, "smallcnn", "dccm_triplet_mi")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, load_registry(strict=False))
    assert str(info.value) == (
        f"{path}: [objective.1] name: 'dccm_triplet_mi' needs the backbone feature(s) deep, "
        "shallow, which backbone 'smallcnn' does not provide (it provides: none)"
    )


def test_cli_check_exits_2_with_the_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = recipe_with(tmp_path, "smallcnn", "dccm_triplet_mi")
    assert cli.main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "needs the backbone feature(s) deep, shallow" in err and "Traceback" not in err


def test_a_backbone_that_provides_them_passes(tmp_path: Path) -> None:
    recipe = load_recipe(recipe_with(tmp_path, "dccm_cnn", "dccm_triplet_mi"), load_registry(strict=False))
    assert recipe.objectives[1].entry.name == "dccm_triplet_mi"
