"""The wheel must carry every package and preset (a non-editable `pip install .` is what users run)."""
import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

from conftest import ROOT


def test_pyproject_lists_every_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "sparsenas").rglob("__init__.py")}
    mapped = set(config["package-dir"])
    assert on_disk | mapped == set(config["packages"])
    for package, folder in config["package-dir"].items():
        assert (ROOT / folder / "__init__.py").is_file() and list((ROOT / folder).glob("*.yaml"))
        assert config["package-data"][package] == ["*.yaml"]
