"""``mihead plugins --verbose`` (a block per plugin that reads well at 80 columns) and
``--json`` (the same facts for scripts), checked against the declared parameters."""

from __future__ import annotations

import json
import typing
from collections.abc import Callable

import pytest

from mihead.catalog import describe_text
from mihead.contracts import ParamInfo, describe
from mihead.plugins import Registered, Registry, load_registry

REGISTRY = load_registry(strict=False)


def _listed(entry: Registered) -> list[ParamInfo]:
    unused = entry.cls.unused_keys()
    return [i for i in describe(entry.cls.Params) if i.name not in unused]


def _blocks(text: str) -> dict[str, list[str]]:
    """'kind name' -> the lines of its block."""
    blocks = {}
    for block in text.strip("\n").split("\n\n"):
        lines = block.splitlines()
        kind, name = lines[0].split()[:2]
        blocks[f"{kind} {name}"] = lines[1:]
    return blocks


def _parameters(lines: list[str]) -> dict[str, str]:
    """Parameter name -> its head line and help joined with single spaces (as if unwrapped)."""
    params: dict[str, list[str]] = {}
    for line in lines:
        if line.startswith("  ") and not line.startswith("   "):
            name = line.strip().split(":")[0]
            params[name] = [line.strip()]
        else:
            assert line.startswith("      "), line
            params[name].append(line.strip())
    return {name: " ".join(parts) for name, parts in params.items()}


@pytest.fixture
def verbose_at_80(run_cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch) -> str:
    """``mihead plugins --verbose`` in an 80-column terminal: stdout (stderr stays empty)."""
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_cli("plugins", "--verbose")
    assert code == 0 and err == "", err
    return out


def test_verbose_fits_80_columns(verbose_at_80: str) -> None:
    for line in verbose_at_80.splitlines():
        assert len(line) <= 80 or " " not in line.strip(), line  # only a single token longer than the line may overflow


def test_verbose_has_a_block_per_plugin_with_every_parameter_unbroken(verbose_at_80: str) -> None:
    """Joining each parameter's lines with spaces gives back its declaration and its help
    exactly: the text was wrapped only at spaces, never inside a token."""
    blocks = _blocks(verbose_at_80)
    entries = sorted(REGISTRY.entries(), key=lambda e: (e.kind, e.name))
    assert list(blocks) == [f"{e.kind} {e.name}" for e in entries]
    for entry in entries:
        params = _parameters(blocks[f"{entry.kind} {entry.name}"])
        infos = _listed(entry)
        assert list(params) == [i.name for i in infos] or (not infos and params == {"(no parameters)": "(no parameters)"})
        for info in infos:
            bounds = f" ({info.bounds_text()})" if info.bounds_text() else ""
            type_text = str(info.type) if typing.get_origin(info.type) else info.type.__name__
            assert params[info.name] == f"{info.name}: {type_text} = {info.default!r}{bounds} {info.help}"


def test_verbose_of_a_dataset_leaves_out_the_keys_it_does_not_honour(verbose_at_80: str) -> None:
    blocks = _blocks(verbose_at_80)
    assert list(_parameters(blocks["dataset digits"])) == ["limit", "cache"]
    assert list(_parameters(blocks["dataset cifar10"])) == ["root", "download", "verify", "limit", "cache"]


def test_narrow_terminals_wrap_at_spaces_too() -> None:
    text = describe_text(REGISTRY, 40)
    for line in text.splitlines():
        assert len(line) <= 40 or " " not in line.strip(), line


def test_json_lists_every_plugin_and_parameter(run_cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = run_cli("plugins", "--json")
    assert code == 0 and err == "", err
    listed = json.loads(out)
    registry: Registry = REGISTRY
    assert [(p["kind"], p["name"]) for p in listed] == sorted((e.kind, e.name) for e in registry.entries())
    for item in listed:
        entry = registry.get(item["kind"], item["name"])
        assert (item["package"], item["version"], item["plugin"]) == (entry.package, entry.version, entry.plugin)
        infos = _listed(entry)
        assert [p["name"] for p in item["parameters"]] == [i.name for i in infos]
        for p, info in zip(item["parameters"], infos, strict=True):
            assert p["default"] == info.default and p["help"] == info.help
            assert p["bounds"] == {k: v for k, v in info.bounds.items() if v is not None}
            assert p["choices"] == (None if info.choices is None else list(info.choices))
            assert p["also"] == list(info.also)
    digits = next(p for p in listed if p["name"] == "digits")
    assert [p["name"] for p in digits["parameters"]] == ["limit", "cache"]
    mlp = [p["name"] for p in next(p for p in listed if p["name"] == "mlp")["parameters"]]
    assert "hidden" in mlp and not {"clusters", "overclusters", "per_attachment"} & set(mlp)  # [head]'s core keys
    widths = next(p for p in next(p for p in listed if p["name"] == "smallcnn")["parameters"] if p["name"] == "widths")
    assert widths["type"] == "list[int]" and widths["default"] == [64, 128, 128]
