"""Plug-ins check their own options: a space, strategy or supernet search built directly with a bad option raises
the same one-line ConfigError as the same option given through a config (`assemble.resolve`) or the CLI. The bad
values are derived from each class's declared schema, so every registered plug-in and every field is covered: a
value of a wrong type, a name outside the field's choices, and numbers outside its range."""
import json

import pytest

import sparsenas.spaces  # noqa: F401 — registers the built-in spaces
from sparsenas.assemble import resolve
from sparsenas.cli import main
from sparsenas.errors import ConfigError
from sparsenas.integrations.optuna import StrategySampler
from sparsenas.objective import Objective
from sparsenas.schema import Field, count, schema_of
from sparsenas.space import SPACES, Categorical, SearchSpace, SuperNet
from sparsenas.strategies import STRATEGIES, Strategy
from sparsenas.testing._common import TinySpace

NUMBERS = [-10 ** 6, -1, 0, 1, 2, 7, 10 ** 6]
FRACTIONS = [-0.5, 0.5, 1.5]
LISTS = [[], [-1], [0], [2], [1.5], [1, 1]]


def _rejected(field: Field, candidates: list) -> list:
    """The lowest and the highest candidate the field's check refuses (one each side of its range)."""
    bad = [v for v in candidates if not field.check(v)]
    return sorted({json.dumps(v): v for v in bad[:1] + bad[-1:]}.values(), key=json.dumps)


def bad_values(field: Field) -> list[tuple[str, object]]:
    """(what, value) pairs that `field` refuses."""
    out = []
    if object not in field.types:
        out.append(("type", 12345 if str in field.types else "bad"))
    if field.names() is not None:
        out.append(("choice", "no-such-name" if str in field.types else ["no-such-name"]))
    if field.check is not None:
        if int in field.types:
            numbers = NUMBERS + (FRACTIONS if float in field.types else [])
            out += [("range", v) for v in _rejected(field, sorted(numbers))]
        elif list in field.types and field.names() is None:
            out += [("range", v) for v in _rejected(field, LISTS)]
    return out


def cases(classes) -> list:
    return [pytest.param(name, key, value, id=f"{name}-{key}-{what}-{value}")
            for name, cls in classes for key, field in schema_of(cls).items() for what, value in bad_values(field)]


def error(fn) -> str:
    with pytest.raises(ConfigError) as e:
        fn()
    text = str(e.value)
    assert text and "\n" not in text
    return text


def config_error(section: dict) -> str:
    fragments = [{"space": {"name": "nb201"}, "strategy": {"name": "random"}}, section]
    return error(lambda: resolve(fragments))


SPACE_CLASSES = [(name, SPACES.get(name)) for name in SPACES.names()]
STRATEGY_CLASSES = [(name, STRATEGIES.get(name)) for name in STRATEGIES.names()]
SUPERNETS = [(name, cls().supernet_search_class()) for name, cls in SPACE_CLASSES if issubclass(cls, SuperNet)]


def test_every_plugin_declares_a_field_with_a_bad_value():
    assert len(cases(SPACE_CLASSES)) > 3 * len(SPACE_CLASSES)
    assert len(cases(STRATEGY_CLASSES)) > 2 * len(STRATEGY_CLASSES)
    assert {name for name, _ in SUPERNETS} == {"dass", "tas"}


@pytest.mark.parametrize("name,key,value", cases(SPACE_CLASSES))
def test_a_space_built_directly_checks_its_options_as_a_config_does(name, key, value):
    direct = error(lambda: SPACES.get(name)(**{key: value}))
    assert direct == config_error({"space": {"name": name, key: value}})
    assert direct.startswith(f"space.{key} ") or direct.startswith("unknown mask")


def _space_for(cls: type[Strategy]) -> SearchSpace:
    return SPACES.get("dass")(C=4) if cls.requires else TinySpace()


@pytest.mark.parametrize("name,key,value", cases(STRATEGY_CLASSES))
def test_a_strategy_built_directly_checks_its_options_as_a_config_does(name, key, value):
    cls = STRATEGIES.get(name)
    direct = error(lambda: cls(_space_for(cls), Objective(), 0, **{key: value}))
    assert direct == config_error({"strategy": {"name": name, key: value}})
    assert direct.startswith(f"strategy.{key} ")


@pytest.mark.parametrize("name,key,value", cases(SUPERNETS))
def test_a_supernet_search_checks_its_options_up_front(name, key, value):
    """`strategy.options` of --strategy differentiable: checked when the strategy is built (before any trial),
    with the same line whether the strategy comes from a config or is built directly."""
    space = SPACES.get(name)(C=4)
    direct = error(lambda: STRATEGIES.get("differentiable")(space, Objective(), 0, options={key: value}))
    assert direct == error(lambda: space.supernet_search_class().resolve_options({key: value}))
    assert direct.startswith(f"strategy.options.{key} ")


def _first_range_case(classes) -> list:
    out = {}
    for name, cls in classes:
        for key, field in schema_of(cls).items():
            for what, value in bad_values(field):
                if what == "range" and not isinstance(value, list):
                    out.setdefault(name, pytest.param(name, key, value, id=f"{name}-{key}-{value}"))
    return list(out.values())


@pytest.mark.parametrize("name,key,value", _first_range_case(SPACE_CLASSES))
def test_the_cli_gives_the_same_line_as_a_space_built_directly(name, key, value, tmp_path, capsys):
    direct = error(lambda: SPACES.get(name)(**{key: value}))
    code = main(["search", "--space", name, "--strategy", "random", "--runs-dir", str(tmp_path),
                 "--set", f"space.{key}={json.dumps(value)}"])
    assert code == 2 and capsys.readouterr().err.strip() == f"sparsenas: error: {direct}"


@pytest.mark.parametrize("name,key,value", _first_range_case(STRATEGY_CLASSES))
def test_the_cli_gives_the_same_line_as_a_strategy_built_directly(name, key, value, tmp_path, capsys):
    cls = STRATEGIES.get(name)
    direct = error(lambda: cls(_space_for(cls), Objective(), 0, **{key: value}))
    space = "dass" if cls.requires else "nb201"
    code = main(["search", "--space", space, "--strategy", name, "--runs-dir", str(tmp_path),
                 "--set", f"strategy.{key}={json.dumps(value)}"])
    assert code == 2 and capsys.readouterr().err.strip() == f"sparsenas: error: {direct}"


def test_options_are_typed_and_complete_and_unknown_keys_refused():
    space = SPACES.get("tas")(kd_temperature=4, ratios=(0.5, 1.0))
    assert space.options["kd_temperature"] == 4.0 and isinstance(space.options["kd_temperature"], float)
    assert space.options["ratios"] == [0.5, 1.0] and space.options["depth"] == 20
    assert error(lambda: SPACES.get("dass")(bogus=1)).startswith("unknown config key space.bogus (known: C, ")
    assert error(lambda: STRATEGIES.get("random")(TinySpace(), Objective(), 0, bogus=1)).startswith(
        "unknown config key strategy.bogus")


def test_an_optuna_sampler_checks_the_strategy_options_when_made():
    direct = error(lambda: STRATEGIES.get("evolution")(TinySpace(), Objective(), 0, population=0))
    assert error(lambda: StrategySampler("evolution", population=0)) == direct == \
        "strategy.population must be an integer >= 1, got 0"


class DefaultsOnly(SearchSpace):
    """A third-party space that declares only `defaults`: each option typed by its default."""

    defaults = {"n": 3, "scale": 0.5, "tag": None}

    def dims(self):
        return {"x": Categorical(tuple(range(self.options["n"])))}


class Checked(SearchSpace):
    options_schema = {"n": count(3)}

    def dims(self):
        return {"x": Categorical(tuple(range(self.options["n"])))}


class CheckedMore(Checked):
    defaults = {"n": 5, "extra": "a"}  # a subclass changing a default keeps the parent's check of that key


def test_a_plugin_with_only_defaults_is_typed_by_them():
    assert DefaultsOnly(scale=1).options == {"n": 3, "scale": 1.0, "tag": None}
    assert DefaultsOnly(tag=[1]).options["tag"] == [1]  # a null default takes anything
    assert error(lambda: DefaultsOnly(n="3")) == "space.n must be int, got '3'"


def test_a_schema_gives_defaults_and_a_subclass_with_defaults_keeps_the_checks():
    assert Checked.defaults == {"n": 3} and Checked().options == {"n": 3}
    assert CheckedMore().options == {"n": 5, "extra": "a"}
    assert error(lambda: CheckedMore(n=0)) == "space.n must be an integer >= 1, got 0"
    assert error(lambda: CheckedMore(extra=1)) == "space.extra must be str, got 1"
