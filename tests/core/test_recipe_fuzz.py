"""Property-based fuzzing of ``mihead check``: malformed recipes and ``--set``
strings end with exit status 2 and a one-line message (or 0 when valid), never a traceback."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mihead import cli

SECTIONS = ["run", "data", "augment", "backbone", "head", "objective", "train", "eval"]
KEYS = [
    "name", "seed", "out", "split", "root", "limit", "views", "where", "widths", "features",
    "clusters", "overclusters", "per_attachment", "hidden", "weight", "lamb", "epochs", "lr",
    "batch_size", "device", "precision", "optimizer", "every", "selection", "max_steps",
]
NAMES = ["digits", "small_affine", "smallcnn", "mlp", "iic", "cifar10", "nope"]

BASE: dict[str, Any] = {
    "data": {"name": "digits"},
    "augment": {"name": "small_affine"},
    "backbone": {"name": "smallcnn"},
    "head": {"name": "mlp"},
    "objective": [{"name": "iic"}],
    "train": {"device": "cpu"},
}

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.sampled_from(NAMES),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=2)),
    max_leaves=5,
)
section_names = st.one_of(st.sampled_from(SECTIONS), text)
key_names = st.one_of(st.sampled_from(KEYS), text)
mutation = st.tuples(
    st.sampled_from(["set", "delete", "replace_section", "objective_item"]), section_names, key_names, values
)
set_strings = st.one_of(
    text,
    st.builds(
        lambda s, k, v: f"{s}.{k}={v}",
        st.one_of(section_names, st.sampled_from(["objective.iic", "objective.0", "objective.7"])),
        key_names,
        st.one_of(text, values.map(repr), st.sampled_from(["true", "[1, 2]", "1e400", "nan", '"x"'])),
    ),
)


def mutate(data: dict[str, Any], how: str, section: str, key: str, value: Any) -> None:
    if how == "delete":
        table = data.get(section)
        if isinstance(table, dict):
            table.pop(key, None)
        else:
            data.pop(section, None)
    elif how == "replace_section":
        data[section] = value
    elif how == "objective_item":
        data["objective"] = [{"name": "iic"}, value] if isinstance(value, dict) else value
    else:
        table = data.setdefault(section, {})
        if isinstance(table, list) and table and isinstance(table[0], dict):
            table = table[0]
        if isinstance(table, dict):
            table[key] = value
        else:
            data[section] = {key: value}


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mutations=st.lists(mutation, max_size=4),
    overrides=st.lists(set_strings, max_size=3),
    raw=st.one_of(st.none(), text),
)
def test_check_never_raises(
    mutations: list[tuple[str, str, str, Any]],
    overrides: list[str],
    raw: str | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = copy.deepcopy(BASE)
    for m in mutations:
        mutate(data, *m)
    path = tmp_path / "fuzz.toml"
    path.write_text(raw if raw is not None else tomli_w.dumps(data), encoding="utf-8")
    capsys.readouterr()
    code = cli.main(["check", str(path), *(f"--set={s}" for s in overrides)])
    out, err = capsys.readouterr()
    assert code in (0, 2), (code, err)
    if code == 0:
        assert ": ok (" in out and err == ""
    else:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("mihead: error: ")
