import pytest
from hypothesis import given, settings, strategies as st

from sparsenas.assemble import resolve
from sparsenas.config import load_preset, parse_override, preset_names
from sparsenas.errors import ConfigError
from sparsenas.space import SPACES
from sparsenas.strategies import STRATEGIES
import sparsenas.spaces  # noqa: F401


def base():
    return [load_preset("space", "dass", SPACES), load_preset("strategy", "random", STRATEGIES)]


def test_presets_ship_and_resolve_completely():
    assert "dass" in preset_names("search_spaces") and "random" in preset_names("strategies")
    cfg = resolve(base())
    assert cfg["space"]["name"] == "dass" and cfg["space"]["C"] == 8
    assert cfg["strategy"] == {"name": "random", "max_retries": 1000}
    assert cfg["objective"]["maximize"] == ["val_acc"] and cfg["search"]["budget"] >= 1


def test_overrides_are_typed_and_win():
    cfg = resolve(base() + [parse_override("train.epochs=2"), parse_override("space.keep_ratios=[0.1, 0.5]"),
                            parse_override("train.lr=1")])
    assert cfg["train"]["epochs"] == 2 and cfg["space"]["keep_ratios"] == [0.1, 0.5]
    assert cfg["train"]["lr"] == 1.0 and isinstance(cfg["train"]["lr"], float)


@pytest.mark.parametrize("override,message", [
    ("train.epochz=2", "unknown config key train.epochz"),
    ("train.epochs=two", "train.epochs must be int"),
    ("train.epochs=0", "train.epochs must be >= 1"),
    ("search.budget=-3", "search.budget must be >= 1"),
    ("bogus.x=1", "unknown config section 'bogus'"),
    ("space.Cc=3", "unknown config key space.Cc"),
    ("space.C=1.5", "space.C must be int"),
    ("strategy.name=nope", "unknown strategy 'nope'"),
    ("data.name=imagenet", "unknown dataset 'imagenet'"),
    ("execution.executor=slurm", "unknown executor 'slurm'"),
    ("train.lr=.nan", "train.lr must be"),
    ("objective.maximize=[1]", "objective.maximize must be"),
    ("objective.constraints={flops: [5, 1]}", "low > high"),
])
def test_bad_values_give_one_line_errors(override, message):
    with pytest.raises(ConfigError) as e:
        resolve(base() + [parse_override(override)])
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("item", ["noequals", "=3", "a..b=1", ".a=1"])
def test_malformed_set(item):
    with pytest.raises(ConfigError):
        parse_override(item)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["space", "strategy", "train", "data", "search", "objective", "execution",
                                        "latency", "junk"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=5),
                                 st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.integers(), st.floats(),
                                                                                st.text(max_size=5),
                                                                                st.lists(st.integers(), max_size=3))))))
def test_fuzzed_configs_resolve_or_fail_cleanly(fragment):
    try:
        cfg = resolve(base() + [fragment])
    except ConfigError as e:
        assert "\n" not in str(e)
    else:
        assert set(cfg) == {"space", "strategy", "search", "data", "train", "objective", "execution", "latency",
                            "scheduler"}


def test_yaml_numbers_as_users_write_them():
    from sparsenas.config import safe_load

    assert safe_load("a: 1e-3\nb: 1e12\nc: 2:4\nd: 10\ne: 0.5") == {"a": 0.001, "b": 1e12, "c": "2:4", "d": 10, "e": 0.5}
    assert parse_override("space.mask=2:4") == {"space": {"mask": "2:4"}}
    assert parse_override("train.lr=1e-2") == {"train": {"lr": 0.01}}
