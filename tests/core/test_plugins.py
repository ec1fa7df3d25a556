"""The plugin registry: entry points, failures named by plugin and package, strict mode."""

from __future__ import annotations

import itertools
import textwrap
import types
from pathlib import Path

import pytest

import mihead
from corehelp import QUICKSTART, error_line
from mihead import hookimpl
from mihead.contracts import ModelOutputs, Objective, ObjectiveParams
from mihead.errors import PluginError, RecipeError
from mihead.plugins import AUTOLOAD_ENV, STRICT_ENV, load_registry
from mihead.recipe import load_recipe

BUILTINS = {
    ("dataset", "digits"): "mihead_digits",
    ("backbone", "smallcnn"): "mihead_smallcnn",
    ("head", "mlp"): "mihead_mlp_head",
    ("objective", "iic"): "mihead_iic",
    ("augmenter", "small_affine"): "mihead_tensor_augment",
}

OBJECTIVE_SOURCE = """
from mihead import hookimpl
from mihead.contracts import Objective


class Dup(Objective):
    name = {name!r}

    def forward(self, outputs):
        return outputs.probs.sum() * 0


@hookimpl
def register_objectives():
    return [Dup]
"""

_unique = itertools.count()


@pytest.fixture(autouse=True)
def _lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI sets MIHEAD_STRICT_PLUGINS=1; these tests choose strictness themselves."""
    monkeypatch.delenv(STRICT_ENV, raising=False)
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Installs a fake distribution (dist-info with entry_points.txt, plus modules) on
    sys.path; returns the unique module names it made, in order."""

    def make(package: str, plugins: dict[str, str]) -> list[str]:
        site = tmp_path / f"site{next(_unique)}"
        info = site / f"{package}-1.2.3.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.2.3\n")
        lines, modules = ["[mihead]"], []
        for entry, source in plugins.items():
            module = f"mihead_test_{entry}_{next(_unique)}"
            (site / f"{module}.py").write_text(textwrap.dedent(source))
            lines.append(f"{entry} = {module}")
            modules.append(module)
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(site))
        return modules

    return make


def test_builtins_come_from_entry_points_of_the_mihead_package() -> None:
    registry = load_registry()
    assert registry.problems == []
    for (kind, name), plugin in BUILTINS.items():
        entry = registry.get(kind, name)
        assert entry.plugin == plugin
        assert entry.package == "mihead" and entry.version == mihead.__version__
        assert entry.cls.name == name and entry.kind == kind


def test_import_failure_is_reported_and_the_others_load(install) -> None:  # type: ignore[no-untyped-def]
    install("brokenpkg", {"broken": "raise RuntimeError('boom at import')\n"})
    registry = load_registry()
    assert registry.problems == [
        "plugin 'broken' (package brokenpkg) failed to import: RuntimeError: boom at import"
    ]
    for kind, name in BUILTINS:
        registry.get(kind, name)


def test_missing_module_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "ghost-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ghost\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mihead]\nghost = no_such_module_anywhere_42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (problem,) = load_registry().problems
    assert problem.startswith("plugin 'ghost' (package ghost) failed to import: ModuleNotFoundError")


def test_duplicate_class_names_are_reported_and_ambiguous_in_recipes(install, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = OBJECTIVE_SOURCE.format(name="twice")
    install("twinpkg", {"first": source, "second": source})
    registry = load_registry()
    (problem,) = registry.problems
    assert problem.startswith("objective name 'twice' is registered by more than one plugin: ")
    assert "'first' (package twinpkg)" in problem and "'second' (package twinpkg)" in problem
    with pytest.raises(PluginError, match="more than one plugin"):
        registry.get("objective", "twice")
    recipe = tmp_path / "r.toml"
    recipe.write_text(QUICKSTART.read_text().replace('name = "iic"', 'name = "twice"'))
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe, registry)
    message = str(info.value)
    assert message.startswith(f"{recipe}: [objective.0] name: objective name 'twice' is registered by more than one plugin")
    # the name of a built-in taken again is ambiguous too, and reported as such
    install("clashpkg", {"clash": OBJECTIVE_SOURCE.format(name="iic")})
    registry = load_registry()
    assert any("objective name 'iic' is registered by more than one plugin" in p for p in registry.problems)
    with pytest.raises(RecipeError, match=r"\[objective\.0\] name: .*'mihead_iic' \(package mihead\)"):
        load_recipe(QUICKSTART, registry)


def test_duplicate_entry_point_names_are_reported(install) -> None:  # type: ignore[no-untyped-def]
    install("onepkg", {"samename": OBJECTIVE_SOURCE.format(name="one")})
    install("otherpkg", {"samename": OBJECTIVE_SOURCE.format(name="other")})
    registry = load_registry()
    (problem,) = registry.problems
    assert "plugin 'samename'" in problem and "already registered" in problem
    assert len([n for n in ("one", "other") if n in registry.names("objective")]) == 1


def _module(name: str, **hooks: object) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(module, hook, hookimpl(fn))
    return module


class _NotObjective:
    name = "x"


class _NoName(Objective):
    def forward(self, outputs: ModelOutputs):  # type: ignore[no-untyped-def]
        return outputs.probs.sum()


class _BadParams(Objective):
    name = "bad_params"
    Params = dict  # type: ignore[assignment]

    def forward(self, outputs: ModelOutputs):  # type: ignore[no-untyped-def]
        return outputs.probs.sum()


class _Good(Objective):
    name = "good_test_objective"
    Params = ObjectiveParams

    def forward(self, outputs: ModelOutputs):  # type: ignore[no-untyped-def]
        return outputs.probs.sum()


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        ([42], "register_objectives returned 42, which is not a subclass of mihead.contracts.Objective"),
        ([_NotObjective], "which is not a subclass of mihead.contracts.Objective"),
        ([_NoName], "_NoName has no string 'name'"),
        ([_BadParams], "_BadParams.Params is not a dataclass extending ObjectiveParams"),
    ],
)
def test_hook_returning_a_wrong_type_is_reported(returned: list[object], expected: str) -> None:
    module = _module("wrongtype", register_objectives=lambda: [*returned, _Good])
    registry = load_registry(autoload=False, plugins=[module])
    (problem,) = registry.problems
    assert problem.startswith("plugin 'wrongtype' (package wrongtype): ")
    assert expected in problem
    assert registry.names("objective") == ["good_test_objective"]  # the good class still loads
    with pytest.raises(PluginError, match=r"\(strict plugin loading\)$"):
        load_registry(autoload=False, strict=True, plugins=[module])


def test_hook_that_raises_is_reported() -> None:
    def fails() -> list[type]:
        raise ValueError("no objectives today")

    registry = load_registry(autoload=False, plugins=[_module("failing", register_objectives=fails)])
    assert registry.problems == [
        "plugin 'failing' (package failing): register_objectives failed: ValueError: no objectives today"
    ]


def test_strict_mode_makes_each_problem_fatal(install, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    install("brokenpkg", {"broken": "import no_such_dependency_123\n"})
    assert load_registry().problems  # lenient: reported, not raised
    with pytest.raises(PluginError, match=r"^plugin 'broken' \(package brokenpkg\) failed to import"):
        load_registry(strict=True)
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(PluginError, match="strict plugin loading"):
        load_registry()
    assert load_registry(strict=False).problems  # the argument wins over the environment


def test_autoload_off_keeps_only_the_given_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module("only_mine", register_objectives=lambda: [_Good])
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    registry = load_registry(plugins=[module])
    assert [(e.kind, e.name, e.plugin) for e in registry.entries()] == [
        ("objective", "good_test_objective", "only_mine")
    ]
    monkeypatch.delenv(AUTOLOAD_ENV)
    assert "iic" in load_registry(plugins=[module]).names("objective")
    assert load_registry(autoload=False).entries() == []


def test_cli_warns_about_broken_plugins_and_fails_in_strict_mode(  # type: ignore[no-untyped-def]
    install, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    install("brokenpkg", {"broken": "raise ImportError('missing native library')\n"})
    code, out, err = run_cli("check", str(QUICKSTART))
    assert code == 0
    assert "warning: plugin 'broken' (package brokenpkg) failed to import: ImportError: missing native library" in " ".join(err.split())
    monkeypatch.setenv(STRICT_ENV, "1")
    code, out, err = run_cli("plugins")
    assert code == 2
    assert "plugin 'broken' (package brokenpkg) failed to import" in error_line(err)


def _cells(text: str) -> list[list[str]]:
    return [[c for c in line.split() if c not in "│┃|"] for line in text.splitlines()]


def test_plugins_command_lists_kind_name_package_version(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli("plugins")
    assert code == 0
    rows = _cells(out)
    for kind, name in BUILTINS:
        assert [kind, name, "mihead", mihead.__version__] in rows
