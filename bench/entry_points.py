"""Writes mihead's entry-point metadata for a checkout that is not installed.

    python bench/entry_points.py DIR        # then: PYTHONPATH=DIR:.:plugins python -m mihead plugins

mihead finds its plugins only through the ``mihead`` entry-point group (mihead/plugins.py),
which importlib.metadata reads from the metadata of the distributions on sys.path. A GPU
machine that bench/gpu_check.sh runs on may have no network and a Python environment that is
not ours to install into, so this writes what ``pip install -e .`` would leave for importlib.metadata:
DIR/mihead-VERSION.dist-info with METADATA (name, version) and entry_points.txt (every
``[project.entry-points.*]`` group and ``[project.scripts]`` of pyproject.toml). With DIR on
sys.path ahead of any installed copy, the plugins load through their entry points exactly as
from an installed distribution. Needs the standard library only (Python 3.11's tomllib).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def entry_points_text(project: dict[str, object]) -> str:
    """entry_points.txt (INI sections, one ``name = object reference`` a line) of a
    pyproject ``[project]`` table."""
    groups: dict[str, dict[str, str]] = {}
    scripts = project.get("scripts")
    if isinstance(scripts, dict) and scripts:
        groups["console_scripts"] = scripts
    extra = project.get("entry-points")
    if isinstance(extra, dict):
        groups.update(extra)
    sections = ["\n".join([f"[{group}]", *(f"{name} = {ref}" for name, ref in items.items())]) for group, items in groups.items()]
    return "\n\n".join(sections) + "\n"


def write_dist_info(target: Path, pyproject: Path = PYPROJECT) -> Path:
    """TARGET/NAME-VERSION.dist-info (replacing an older one of the same name) from
    ``pyproject``; returns the folder written."""
    project = tomllib.loads(pyproject.read_text())["project"]
    name, version = str(project["name"]), str(project["version"])
    folder = target / f"{name.replace('-', '_')}-{version}.dist-info"
    for old in target.glob(f"{name.replace('-', '_')}-*.dist-info"):
        shutil.rmtree(old)
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (folder / "entry_points.txt").write_text(entry_points_text(project))
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(args) != 1 or args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    print(write_dist_info(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
