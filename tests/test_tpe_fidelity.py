"""The TPE strategy's contract with Optuna: public API only, the pyproject floor, plain-data exact resume."""
import ast
import json
import re
from pathlib import Path

import optuna
import pytest

from sparsenas.objective import Objective
from sparsenas.spaces.nb201 import NB201Space
from sparsenas.strategies.tpe import TPE
from sparsenas.testing import OBJECTIVE, drive

ROOT = Path(__file__).resolve().parents[1]
OPTUNA_USERS = [ROOT / "sparsenas/strategies/tpe.py", ROOT / "sparsenas/integrations/optuna.py"]


def private_optuna_uses(path: Path) -> list[str]:
    """Private names reached through Optuna: `_x` attributes of anything but `self`, imports of `_x` modules."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("optuna"):
            names = [*node.module.split("."), *(alias.name for alias in node.names)]
            found += [f"{path.name}:{node.lineno} {node.module}" for n in names if n.startswith("_")]
    return found


@pytest.mark.parametrize("path", OPTUNA_USERS, ids=lambda p: p.name)
def test_only_optuna_public_api_is_used(path):
    assert private_optuna_uses(path) == []


def test_the_private_api_check_catches_what_it_should(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from optuna.samplers._lazy_random_state import LazyRandomState\n"
                   "def f(study):\n    return study._storage, self._ok\n")
    assert private_optuna_uses(bad) == ["bad.py:1 optuna.samplers._lazy_random_state", "bad.py:3 ._storage"]


def test_pyproject_floor_is_the_first_optuna_with_what_we_use():
    floor = re.search(r'"optuna>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert floor == "5.0"  # Trial.set_constraint is new in Optuna 5.0 (absent from 4.9; checked by hand)
    assert int(optuna.__version__.split(".")[0]) >= 5
    assert callable(getattr(optuna.trial.Trial, "set_constraint", None))


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_resume_from_plain_data_is_exact(sampler):
    """The state is the trials alone (JSON); a resumed strategy proposes what the uninterrupted one does."""
    space = NB201Space()
    options = dict(sampler=sampler, n_startup_trials=4, population_size=4)
    full = TPE(space, OBJECTIVE, 3, **options)
    expected = drive(full, space, 10) + drive(full, space, 8, start=10)
    first = TPE(space, OBJECTIVE, 3, **options)
    assert drive(first, space, 10) == expected[:10]
    state = json.loads(json.dumps(first.state_dict()))
    assert set(state) == {"trials", "study_attrs", "pending"}
    resumed = TPE(space, OBJECTIVE, 3, **options)
    resumed.load_state_dict(state)
    assert drive(resumed, space, 8, start=10) == expected[10:]
    assert len(set(expected)) > 12  # seeded per trial number: the proposals are not one repeated draw


def test_defaults_are_optunas_but_the_two_documented():
    """Optuna's defaults except constant_liar (on) and NSGA-II's population (20; Optuna's is 50), both documented."""
    import sparsenas.strategies.tpe as tpe

    defaults = {name: field.default for name, field in TPE.options_schema.items()}
    assert defaults["n_startup_trials"] == 10 and defaults["n_ei_candidates"] == 24  # Optuna's
    assert defaults["multivariate"] is None and defaults["constant_liar"] is True
    nsga = TPE(NB201Space(), Objective(["val_acc"], ["flops"]), 0, sampler="nsga2")
    nsga.ask()
    assert nsga.study.sampler.population_size == 20
    assert "`constant_liar: true` (Optuna: false)" in tpe.__doc__ and "`population_size` 20\n(Optuna: 50)" in tpe.__doc__
