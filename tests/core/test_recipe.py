"""Recipe loading: defaults, unknown names, types, ranges, ``--set`` and the CLI's check."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from corehelp import QUICKSTART, error_line, mihead_process
from mihead.errors import RecipeError
from mihead.plugins import Registry
from mihead.recipe import apply_overrides, load_recipe, read_toml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

BASE: dict[str, Any] = {
    "run": {"name": "t", "seed": 3},
    "data": {"name": "digits", "limit": 200},
    "augment": {"name": "small_affine", "views": 2},
    "backbone": {"name": "smallcnn", "widths": [8]},
    "head": {"name": "mlp"},
    "objective": [{"name": "iic"}],
    "train": {"device": "cpu", "batch_size": 100},
}


def write(tmp_path: Path, data: dict[str, Any], name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_text(tomli_w.dumps(data))
    return path


def changed(section: str, **values: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    if section == "objective":
        data["objective"][0].update(values)
    else:
        data.setdefault(section, {}).update(values)
    return data


def error_of(tmp_path: Path, registry: Registry, data: dict[str, Any], overrides: tuple[str, ...] = ()) -> str:
    path = write(tmp_path, data)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry, overrides)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    return message


# --- valid recipes ---------------------------------------------------------------------------


def test_quickstart_loads_and_resolves_defaults(registry: Registry) -> None:
    recipe = load_recipe(QUICKSTART, registry)
    assert recipe.path == str(QUICKSTART)
    assert recipe.data.entry.name == "digits" and recipe.data.entry.package == "mihead"
    assert recipe.augment.params.views == 4
    assert recipe.head.core.per_attachment == 5 and recipe.head.core.overclusters == 50
    assert recipe.train.batch_size == 400 and recipe.train.lr == 2e-3
    # defaults filled in
    assert recipe.train.optimizer == "adam" and recipe.train.schedule == "cosine"
    assert recipe.train.max_steps == 0 and recipe.eval.selection == "nmi_zz"
    assert recipe.head.params.batchnorm is True and recipe.objectives[0].params.weight == 1.0
    assert recipe.augment.core.where == "auto" and recipe.data.params.limit == 0
    resolved = recipe.to_dict()
    assert resolved["train"]["warmup_steps"] == 0
    assert resolved["objective"] == [{"name": "iic", "weight": 1.0, "lamb": 1.2, "overclustering": True}]


def test_integers_are_accepted_for_floats(registry: Registry, tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, changed("train", lr=1)), registry)
    assert recipe.train.lr == 1.0 and isinstance(recipe.train.lr, float)


def test_single_objective_table_is_accepted(registry: Registry, tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["objective"] = {"name": "iic", "weight": 2.0}
    recipe = load_recipe(write(tmp_path, data), registry)
    assert [o.params.weight for o in recipe.objectives] == [2.0]


def test_resolved_recipe_round_trips(registry: Registry, tmp_path: Path) -> None:
    recipe = load_recipe(QUICKSTART, registry, ["objective.iic.lamb=1.5", "run.out=/tmp/x y"])
    resolved = tmp_path / "recipe.toml"
    resolved.write_text(recipe.to_toml())
    assert tomllib.loads(resolved.read_text()) == recipe.to_dict()
    again = load_recipe(resolved, registry)
    assert again.to_dict() == recipe.to_dict()
    assert again.to_toml() == recipe.to_toml()


# --- unknown names ---------------------------------------------------------------------------


def test_unknown_section_with_did_you_mean(registry: Registry, tmp_path: Path) -> None:
    message = error_of(tmp_path, registry, {**BASE, "trian": {"epochs": 2}})
    assert "unknown section [trian]" in message and "did you mean 'train'" in message


def test_unknown_key_with_did_you_mean(registry: Registry, tmp_path: Path) -> None:
    message = error_of(tmp_path, registry, changed("train", epoch=3))
    assert "[train] epoch: unknown key (did you mean 'epochs'?)" in message
    assert "valid keys:" in message


def test_unknown_plugin_key_names_the_plugin_keys(registry: Registry, tmp_path: Path) -> None:
    message = error_of(tmp_path, registry, changed("objective", lam=2.0))
    assert "[objective.0] lam: unknown key (did you mean 'lamb'?)" in message


@pytest.mark.parametrize(
    ("section", "kind", "wrong", "listed"),
    [
        ("data", "dataset", "digitz", "digits"),
        ("backbone", "backbone", "smallcn", "smallcnn"),
        ("head", "head", "mpl", "mlp"),
        ("augment", "augmenter", "small_afine", "small_affine"),
        ("objective", "objective", "iicc", "iic"),
    ],
)
def test_unknown_plugin_lists_the_registered_ones(
    registry: Registry, tmp_path: Path, section: str, kind: str, wrong: str, listed: str
) -> None:
    message = error_of(tmp_path, registry, changed(section, name=wrong))
    label = "objective.0" if section == "objective" else section
    assert f"[{label}] name: unknown {kind} {wrong!r} (did you mean {listed!r}?)" in message
    assert "registered: " in message
    for name in registry.names(kind):
        assert name in message.split("registered: ")[1]


def test_plugin_of_another_kind_is_unknown(registry: Registry, tmp_path: Path) -> None:
    message = error_of(tmp_path, registry, changed("head", name="iic"))
    assert "[head] name: unknown head 'iic'" in message


# --- types and ranges ------------------------------------------------------------------------


def assert_key_error(registry: Registry, tmp_path: Path, section: str, key: str, value: Any, expected: str) -> None:
    """Setting ``key`` of ``section`` to ``value`` fails with ``expected`` after 'FILE: [section] key: '."""
    message = error_of(tmp_path, registry, changed(section, **{key: value}))
    label = "objective.0" if section == "objective" else section
    assert f"[{label}] {key}: {expected}" in message


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("train", "epochs", True, "expected an integer, got True"),
        ("train", "epochs", 2.5, "expected an integer, got 2.5"),
        ("train", "epochs", "3", "expected an integer, got '3'"),
        ("train", "lr", "fast", "expected a finite number, got 'fast'"),
        ("train", "lr", False, "expected a finite number, got False"),
        ("train", "lr", float("inf"), "expected a finite number, got inf"),
        ("objective", "weight", float("nan"), "expected a finite number, got nan"),
        ("train", "compile", 1, "expected true or false, got 1"),
        ("train", "device", 0, "expected a string, got 0"),
        ("run", "name", ["a"], "expected a string"),
        ("backbone", "widths", 8, "expected a list of an integer, got 8"),
        ("backbone", "widths", [8, "16"], "expected a list of an integer"),
        ("backbone", "widths", [8, 1.5], "expected a list of an integer"),
        ("objective", "overclustering", "yes", "expected true or false, got 'yes'"),
    ],
)
def test_wrong_types(
    registry: Registry, tmp_path: Path, section: str, key: str, value: Any, expected: str
) -> None:
    assert_key_error(registry, tmp_path, section, key, value, expected)


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("train", "epochs", 0, "0 is out of range: must be >= 1"),
        ("train", "batch_size", 1, "1 is out of range: must be >= 2"),
        ("train", "lr", 0.0, "0.0 is out of range: must be > 0"),
        ("train", "momentum", 1.0, "1.0 is out of range: must be >= 0, < 1"),
        ("train", "min_lr_ratio", 1.5, "1.5 is out of range: must be >= 0, <= 1"),
        ("run", "seed", -1, "-1 is out of range"),
        ("run", "seed", 2**32, "4294967296 is out of range: must be >= 0, <= 4294967295"),
        ("data", "limit", -5, "-5 is out of range"),
        ("augment", "views", 1, "1 is out of range: must be >= 2"),
        ("objective", "lamb", 0.5, "0.5 is out of range: must be >= 1"),
        ("train", "device", "gpu", "'gpu' is not one of 'auto', 'cpu', 'cuda'"),
        ("train", "optimizer", "adamw", "'adamw' is not one of 'adam', 'sgd', 'rmsprop' (did you mean 'adam'?)"),
        ("eval", "selection", "nmi", "'nmi' is not one of 'nmi_zz', 'best'"),
    ],
)
def test_out_of_range(
    registry: Registry, tmp_path: Path, section: str, key: str, value: Any, expected: str
) -> None:
    assert_key_error(registry, tmp_path, section, key, value, expected)


def test_split_the_dataset_lacks(registry: Registry, tmp_path: Path) -> None:
    message = error_of(tmp_path, registry, changed("eval", split="test"))
    assert "[eval] split: 'digits' has no split 'test'" in message and "splits: all" in message


# --- missing and malformed sections ----------------------------------------------------------


@pytest.mark.parametrize("section", ["data", "augment", "backbone", "head", "objective"])
def test_missing_section(registry: Registry, tmp_path: Path, section: str) -> None:
    data = {k: v for k, v in copy.deepcopy(BASE).items() if k != section}
    message = error_of(tmp_path, registry, data)
    assert "missing section" in message and section in message


@pytest.mark.parametrize("section", ["data", "backbone", "objective"])
def test_missing_name(registry: Registry, tmp_path: Path, section: str) -> None:
    data = copy.deepcopy(BASE)
    if section == "objective":
        data["objective"] = [{"weight": 1.0}]
    else:
        del data[section]["name"]
    message = error_of(tmp_path, registry, data)
    label = "objective.0" if section == "objective" else section
    assert f"[{label}] name: missing" in message and "registered:" in message


def test_sections_that_are_not_tables(registry: Registry, tmp_path: Path) -> None:
    assert "[train]: expected a table" in error_of(tmp_path, registry, {**BASE, "train": 3})
    assert "[data]: expected a table" in error_of(tmp_path, registry, {**BASE, "data": [1]})
    assert "[[objective]] must be one or more tables" in error_of(tmp_path, registry, {**BASE, "objective": []})
    assert "[objective.1]: expected a table" in error_of(
        tmp_path, registry, {**BASE, "objective": [{"name": "iic"}, 5]}
    )


def test_not_toml_and_missing_file(registry: Registry, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 2\n")
    with pytest.raises(RecipeError, match=rf"^{bad}: not valid TOML"):
        load_recipe(bad, registry)
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "absent.toml", registry)


def test_a_recipe_saved_with_a_byte_order_mark_is_read(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + tomli_w.dumps(BASE).encode())
    assert load_recipe(path, registry).train.batch_size == 100


def test_an_objective_of_weight_0_is_warned_about(registry: Registry) -> None:
    dhog = QUICKSTART.parent / "dhog_cifar10.toml"
    assert load_recipe(dhog, registry).warnings() == []
    assert load_recipe(dhog, registry, ["objective.1.weight=0"]).warnings() == [
        "objective.1 (dhog_push) has weight = 0: it is computed and logged but adds nothing to the loss trained on"
    ]
    (every,) = load_recipe(dhog, registry, ["objective.0.weight=0", "objective.1.weight=0"]).warnings()
    assert every.startswith("every objective has weight = 0")


# --- --set -----------------------------------------------------------------------------------


def test_set_parses_toml_values_and_bare_strings(registry: Registry) -> None:
    recipe = load_recipe(
        QUICKSTART,
        registry,
        [
            "train.epochs=7",
            "train.lr=0.5",
            "train.compile=true",
            "backbone.widths=[4, 5]",
            "run.out=/tmp/some where",
            'run.name="quoted"',
            "train.optimizer=sgd",
            "eval.split=",
        ],
    )
    assert recipe.train.epochs == 7 and recipe.train.lr == 0.5 and recipe.train.compile is True
    assert recipe.backbone.params.widths == [4, 5]
    assert recipe.run.out == "/tmp/some where"
    assert recipe.run.name == "quoted" and recipe.train.optimizer == "sgd" and recipe.eval.split == ""


def test_set_later_wins_and_adds_sections(registry: Registry) -> None:
    recipe = load_recipe(QUICKSTART, registry, ["train.epochs=3", "train.epochs=4", "eval.batch_size=7"])
    assert recipe.train.epochs == 4 and recipe.eval.batch_size == 7


def test_set_objective_by_name_and_by_index(registry: Registry, tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["objective"] = [{"name": "iic"}, {"name": "iic", "weight": 0.5}]
    path = write(tmp_path, data)
    by_name = load_recipe(path, registry, ["objective.iic.lamb=2.0"])
    assert [o.params.lamb for o in by_name.objectives] == [2.0, 2.0]
    by_index = load_recipe(path, registry, ["objective.1.weight=3"])
    assert [o.params.weight for o in by_index.objectives] == [1.0, 3.0]


def test_an_objective_error_names_the_address_that_fixes_it(registry: Registry, tmp_path: Path) -> None:
    """Objectives count from 0 in errors as in --set: the error's [objective.1] is the table
    that --set objective.1.KEY changes."""
    data = copy.deepcopy(BASE)
    data["objective"] = [{"name": "iic"}, {"name": "iic", "lamb": 0.5}]
    path = write(tmp_path, data)
    message = error_of(tmp_path, registry, data)
    assert "[objective.1] lamb: 0.5 is out of range" in message
    fixed = load_recipe(path, registry, ["objective.1.lamb=1.5"])
    assert [o.params.lamb for o in fixed.objectives] == [1.0, 1.5]
    with pytest.raises(RecipeError, match=r"no objective '2'; objectives \(by position from 0, or by name\): 0 = iic, 1 = iic$"):
        load_recipe(path, registry, ["objective.2.lamb=1.5"])


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("train.epochs", "expected section.key=value"),
        ("train=3", "expected section.key=value"),
        ("train.a.b=3", "expected section.key=value"),
        ("trian.epochs=3", "unknown section [trian] (did you mean 'train'?)"),
        ("objective.iic=3", "expected objective.NAME.key=value or objective.INDEX.key=value"),
        ("objective.iicc.weight=3", "the recipe has no objective 'iicc' (did you mean 'iic'?)"),
        ("objective.4.weight=3", "the recipe has no objective '4'"),
    ],
)
def test_bad_set_syntax(registry: Registry, item: str, expected: str) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(QUICKSTART, registry, [item])
    assert str(info.value).startswith(f"{QUICKSTART}: --set {item}: ")
    assert expected in str(info.value)


def test_set_values_are_validated_like_the_file(registry: Registry) -> None:
    with pytest.raises(RecipeError, match=r"\[train\] epochs: expected an integer, got 'many'"):
        load_recipe(QUICKSTART, registry, ["train.epochs=many"])
    with pytest.raises(RecipeError, match=r"\[train\] epoch: unknown key \(did you mean 'epochs'\?\)"):
        load_recipe(QUICKSTART, registry, ["train.epoch=3"])


def test_set_on_a_malformed_objective_list_is_an_error() -> None:
    for tables in (3, "iic", [1], ["iic"]):
        with pytest.raises(RecipeError, match="objective"):
            apply_overrides({"objective": tables}, ["objective.0.weight=1"], "r.toml")


def test_set_does_not_touch_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    before = path.read_text()
    apply_overrides(read_toml(path), ["train.epochs=9"], str(path))
    assert path.read_text() == before


# --- mihead check ----------------------------------------------------------------------------


def test_check_exit_status_in_a_subprocess(tmp_path: Path) -> None:
    ok = mihead_process(["check", str(QUICKSTART), "--set", "train.epochs=5"], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"{QUICKSTART}: ok (") and ok.stderr == ""  # a result: stdout only

    bad = mihead_process(["check", str(QUICKSTART), "--set", "train.epochs=0"], cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    line = error_line(bad.stderr)
    assert line == f"mihead: error: {QUICKSTART}: [train] epochs: 0 is out of range: must be >= 1, <= 2147483647 (passes over the training split)"
    assert bad.stderr.strip() == line


def test_check_in_process(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_cli("check", str(write(tmp_path, BASE)))
    assert code == 0 and ": ok (" in out and err == ""
    code, _, err = run_cli("check", str(write(tmp_path, changed("head", name="mpl"))))
    assert code == 2 and "did you mean 'mlp'" in error_line(err)


def test_check_builds_the_model_for_the_images_the_dataset_declares(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """digits declares 8 px grey images and 10 classes: check builds the model without the data,
    so values wrong for that data fail at check, with exit 2."""
    code, out, err = run_cli("check", str(write(tmp_path, changed("head", per_attachment=3))))
    assert code == 0, err
    assert "model built for 8 px x 1 channel images: 3 heads of 10 clusters" in " ".join(out.split())  # unwrapped
    data = changed("augment", name="fast_autoaugment", crop=20)
    code, _, err = run_cli("check", str(write(tmp_path, data)))
    assert code == 2
    assert error_line(err) == "mihead: error: [augment] crop: 20 px is larger than the 8 px images; set augment.crop to at most 8"


def test_check_says_when_the_data_decides_the_model(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """image_folder knows its image size (a parameter) but not its classes until loaded."""
    data = changed("data", name="image_folder", root=str(tmp_path / "absent"), limit=0)
    code, out, _ = run_cli("check", str(write(tmp_path, data)))
    assert code == 0 and "model not built: dataset image_folder gives its image size or classes only once loaded" in " ".join(out.split())
    data["head"]["clusters"] = 4
    code, out, _ = run_cli("check", str(write(tmp_path, data)))
    assert code == 0 and "model built for 32 px x 3 channel images: 1 heads of 4 clusters" in " ".join(out.split())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["head.hidden=2147483647"], "building [head] ran out of memory ("),
        (["backbone.widths=[4, 4, 4, 4]", "backbone.pool_after=[0, 1, 2, 3]"], "[backbone] pool_after: pooling after layer 3 leaves no pixel of the 8 px views; pool at most 3 times"),
    ],
)
def test_check_reports_a_model_that_cannot_be_built_in_one_line(run_cli, tmp_path: Path, overrides: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    """Values within their bounds that still make no model (a head too big to allocate, more
    poolings than 8 px images allow) end in one line and exit 2, not a traceback: torch's own
    error when the plugin does not check, the plugin's when it does."""
    code, _, err = run_cli("check", str(write(tmp_path, BASE)), *(arg for o in overrides for arg in ("--set", o)))
    assert code == 2
    assert error_line(err).startswith(f"mihead: error: {message}")
    if "memory" in message:
        assert error_line(err).endswith("; lower the sizes in [head]")


def test_check_refuses_a_head_of_one_cluster_naming_the_key(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_cli("check", str(write(tmp_path, BASE)), "--set", "head.clusters=1")
    assert code == 2 and out == ""
    line = error_line(err)
    assert line.startswith(f"mihead: error: {tmp_path / 'r.toml'}: [head] clusters: 1 is out of range: must be >= 2, <= 2147483647, or 0 (")
    assert "a head needs at least 2" in line


# --- dataset keys a dataset does not honour --------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "key", "value"),
    [
        ("digits", "download", True),
        ("digits", "verify", False),
        ("digits", "root", "data/digits"),
        ("image_folder", "download", True),
        ("image_folder", "verify", False),
    ],
)
def test_a_dataset_key_that_would_do_nothing_is_refused(registry: Registry, tmp_path: Path, dataset: str, key: str, value: Any) -> None:
    data = changed("data", name=dataset, **{key: value})
    if dataset == "image_folder":
        data["data"]["root"] = str(tmp_path)
    message = error_of(tmp_path, registry, data)
    assert f"[data] {key}: dataset {dataset!r} does not use this key: it would change nothing; remove it (keys it uses: " in message


def test_a_dataset_key_it_honours_or_one_at_its_default_is_accepted(registry: Registry, tmp_path: Path) -> None:
    """A key at its default asks for nothing (the resolved recipe of a run made before this
    check held root, download and verify for every dataset): accepted, and left out of the
    resolved recipe of a dataset that does not use it."""
    recipe = load_recipe(write(tmp_path, changed("data", root="", download=False, verify=True)), registry)
    assert set(recipe.to_dict()["data"]) == {"name", "split", "limit", "cache"}
    folder = load_recipe(write(tmp_path, changed("data", name="image_folder", root=str(tmp_path))), registry)
    assert folder.data.params.root == str(tmp_path)
    assert "root" in folder.to_dict()["data"] and not {"download", "verify"} & set(folder.to_dict()["data"])
    cifar = load_recipe(write(tmp_path, changed("data", name="cifar10", download=True, verify=False)), registry)
    assert cifar.to_dict()["data"]["download"] is True and cifar.to_dict()["data"]["verify"] is False
