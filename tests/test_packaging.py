"""The wheel must carry every package and preset (a non-editable `pip install .` is what users run), and the
preset folders at the top of the repo are plain folders, never importable packages."""
import importlib.util
import shutil
import subprocess
import sys
import zipfile

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

from conftest import ROOT
from sparsenas import presets
from sparsenas.config import preset_names


def test_pyproject_lists_every_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "sparsenas").rglob("__init__.py")}
    mapped = set(config["package-dir"])
    assert on_disk | mapped == set(config["packages"])
    for package, folder in config["package-dir"].items():
        assert package == f"sparsenas.presets.{folder}" and folder in presets.KINDS
        assert not (ROOT / folder / "__init__.py").exists() and list((ROOT / folder).glob("*.yaml"))
        assert config["package-data"][package] == ["*.yaml"]


@pytest.mark.parametrize("kind", presets.KINDS)
def test_preset_folders_are_not_python_packages(kind):
    assert not list((ROOT / kind).glob("*.py"))
    sys.path.insert(0, str(ROOT))
    try:
        assert importlib.util.find_spec(kind) is None or importlib.util.find_spec(kind).origin is None
    finally:
        sys.path.remove(str(ROOT))
    assert preset_names(kind) == sorted(p.stem for p in (ROOT / kind).glob("*.yaml"))


@pytest.mark.slow
def test_the_wheel_carries_the_presets(tmp_path):
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the repo
    for folder in ("sparsenas", *presets.KINDS):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / file, source / file)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(source)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("sparsenas-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in presets.KINDS:
        assert {f"sparsenas/presets/{kind}/{p.name}" for p in (ROOT / kind).glob("*.yaml")} <= names
        assert f"sparsenas/presets/{kind}/__init__.py" not in names
    assert {n for n in names if n.startswith(("strategies/", "search_spaces/"))} == set()
