"""The `model` space over user models (tests/model_zoo.py, loaded as a plug-in): conformance, group_by, the
global-sparsity target and the baseline allocations, weights, one-line refusals, search → export end to end."""
import json

import numpy as np
import pytest
import torch

import model_zoo
from conftest import cli
from sparsenas.errors import ConfigError
from sparsenas.evaluation import TrialTask, run_trial
from sparsenas.export import load_exported
from sparsenas.objective import Objective
from sparsenas.ops import SparseMixin
from sparsenas.ops.allocation import layer_densities
from sparsenas.spaces.model import ModelSpace
from sparsenas.testing import check_space, check_space_evaluates, tiny_context

TINY = {"small_cnn": {}, "mlp": {}, "resnet18": {"width": 4}, "mobilenet_v2": {"width_mult": 0.25, "last": 32}}


def space(factory, **options):
    return ModelSpace(factory=f"model_zoo:{factory}", factory_kwargs=TINY[factory], **options)


@pytest.mark.parametrize("factory,group_by", [("small_cnn", "layer"), ("mlp", "layer"), ("resnet18", "block"),
                                              ("mobilenet_v2", "block")])
def test_model_space_passes_the_conformance_suites(factory, group_by):
    s = space(factory, group_by=group_by, target_sparsity=0.8)
    check_space(s)
    metrics = check_space_evaluates(s, tiny_context())
    assert metrics["sparsity"] == pytest.approx(0.8, abs=0.01)


def test_layers_become_sparse_layers_and_skip_defaults_to_first_and_classifier():
    s = space("resnet18", group_by="layer")
    assert "conv1" not in s.groups and "fc" not in s.groups and "layer2.0.shortcut.0" in s.groups
    model = s.build(s.sample(np.random.default_rng(0)), (1, 8, 8), 10)
    sparse = {n for n, m in model.named_modules() if isinstance(m, SparseMixin)}
    assert sparse == set(s.groups) and isinstance(model.conv1, torch.nn.Conv2d)
    assert len(space("resnet18", skip=[]).groups) == 21


def test_group_by_keeps_resnet18_and_mobilenet_small():
    resnet = ModelSpace(factory="model_zoo:resnet18", group_by="block", structures=["unstructured", "channel"])
    assert len(resnet.dims()) <= 24 and "layer1.0.sparsity" in resnet.dims()
    assert len(space("mobilenet_v2", group_by="type").dims()) == 2  # conv1x1, dwconv3x3


@pytest.mark.parametrize("allocation", ["search", "uniform", "er", "erk", "random"])
def test_every_arch_meets_the_target_sparsity(allocation):
    s = space("resnet18", group_by="block", target_sparsity=0.9, allocation=allocation,
              structures=["unstructured", "channel"])
    seen = set()
    for i in range(6):
        arch = s.sample(np.random.default_rng(i))
        metrics = s.cheap_metrics(arch, tiny_context())
        assert metrics["sparsity"] == pytest.approx(0.9, abs=0.01), s.label(arch)
        seen.add(round(metrics["flops_sparse"]))
    assert len(seen) > 1 or allocation in ("uniform", "er", "erk")


def test_random_allocation_meets_the_density_and_depends_on_the_seed():
    shapes = [(20, 10), (5, 20), (4, 3, 3, 3)]
    a, b = layer_densities(shapes, 0.3, "random", seed=1), layer_densities(shapes, 0.3, "random", seed=2)
    sizes = [200, 100, 108]
    for d in (a, b):
        assert sum(x * n for x, n in zip(d, sizes)) == pytest.approx(0.3 * 408) and max(d) <= 1
    assert a != b and a == layer_densities(shapes, 0.3, "random", seed=1)


def test_nm_structure_only_where_it_fits_and_keeps_n_over_m():
    s = space("mobilenet_v2", group_by="layer", structures=["unstructured", "2:4"])
    depthwise = [g for g in s.groups if "features.2.conv.1" in g][0]
    assert s.dims()[f"{depthwise}.structure"].choices == ("unstructured",)
    arch = s.sample(np.random.default_rng(0)).replace(**{f"{g}.structure": "2:4" for g in s.groups
                                                         if "2:4" in s.dims()[f"{g}.structure"].choices})
    model = s.build(s.validate(arch), (1, 8, 8), 10)
    nm = [m for m in model.modules() if isinstance(m, SparseMixin) and m.mask_mode == "2:4"]
    assert nm and all(float(m.mask().mean()) == 0.5 for m in nm)


def test_pruning_the_initialisation_keeps_each_layers_fan_in_variance():
    """Kept weights of a pruned initialisation are scaled by 1/sqrt(density) (loaded weights never are: above)."""
    s = space("mlp")
    arch = s.sample(np.random.default_rng(0)).replace(**{"fc2.sparsity": 0.9})
    torch.manual_seed(3)
    dense = model_zoo.mlp((1, 8, 8), 10)
    torch.manual_seed(3)
    model = s.build(arch, (1, 8, 8), 10)
    kept = model.fc2.mask().bool()
    assert kept.float().mean().item() == pytest.approx(0.1, abs=0.01)
    assert torch.allclose(model.fc2.weight[kept], dense.fc2.weight[kept] / kept.float().mean().sqrt())


def test_weights_are_loaded_before_magnitude_pruning(tmp_path):
    torch.manual_seed(1)
    dense = model_zoo.mlp((1, 8, 8), 10)
    torch.save(dense.state_dict(), tmp_path / "w.pt")
    s = space("mlp", weights=str(tmp_path / "w.pt"))
    arch = s.sample(np.random.default_rng(0)).replace(**{"fc2.sparsity": 0.5})
    model = s.build(arch, (1, 8, 8), 10)
    w, kept = dense.fc2.weight, model.fc2.mask().bool()
    assert torch.equal(model.fc2.weight, w) and w.abs()[kept].min() >= w.abs()[~kept].max()
    assert torch.equal(model.fc1.weight, dense.fc1.weight)


def _bad(tmp_path, *sets, allow=("model_zoo",)):
    argv = [a for m in allow for a in ("--allow-import", m)]
    argv += ["search", "--space", "model", "--strategy", "random", "--budget", "1", "--runs-dir", tmp_path / "runs",
             "--set", "train.epochs=1", "--set", "data.limit=64", "--quiet"]
    for s in sets:
        argv += ["--set", s]
    return cli(*argv)


@pytest.mark.parametrize("case", ["not_allowed", "not_found", "raising", "weights", "skip", "target_alone"])
def test_bad_inputs_are_one_line_and_exit_2_with_nothing_written(case, tmp_path, capsys):
    torch.save(model_zoo.mlp((1, 8, 8), 10, hidden=16).state_dict(), tmp_path / "other.pt")
    sets = {"not_allowed": ["space.factory=nosuchpkg.models:net"],
            "not_found": ["space.factory=model_zoo:no_such_function"],
            "raising": ["space.factory=model_zoo:broken"],
            "weights": ["space.factory=model_zoo:mlp", f"space.weights={tmp_path / 'other.pt'}"],
            "skip": ["space.factory=model_zoo:mlp", "space.skip=[fc1, nope]"],
            "target_alone": ["space.allocation=erk"]}[case]
    assert _bad(tmp_path, *sets) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparsenas: error: space.") and "\n" not in err, err
    assert {"not_allowed": "--allow-import nosuchpkg.models", "not_found": "no_such_function",
            "raising": "always fails", "weights": "does not match", "skip": "'nope'",
            "target_alone": "target_sparsity"}[case] in err
    assert not (tmp_path / "runs").exists()


def test_factory_errors_direct_are_config_errors():
    with pytest.raises(ConfigError, match="is not imported"):
        ModelSpace(factory="nosuchpkg.models:net")
    with pytest.raises(ConfigError, match="package.module:function"):
        ModelSpace(factory="no_colon")


def test_search_with_a_target_then_report_shows_the_layers_and_export_loads_and_runs(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli("--allow-import", "model_zoo", "search", "--space", "model", "--strategy", "random",
               "--budget", "2", "--name", "m", "--runs-dir", runs, "--set", "space.factory=model_zoo:small_cnn",
               "--set", "space.target_sparsity=0.8", "--set", "space.structures=[unstructured, channel]",
               "--set", "train.epochs=1", "--set", "data.limit=128", "--quiet") == 0
    trials = [json.loads(line) for line in (runs / "m" / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 2 and all(t["status"] == "ok" for t in trials)
    assert all(abs(t["metrics"]["sparsity"] - 0.8) <= 0.01 for t in trials)
    capsys.readouterr()
    assert cli("--allow-import", "model_zoo", "report", runs / "m") == 0
    report = capsys.readouterr().out
    layer_rows = report.split("best arch, layer by layer:\n")[1].split("\n\n")[0].splitlines()[1:]
    searched = [n for names in space("small_cnn").groups.values() for n in names]
    assert [r.split()[0] for r in layer_rows] == searched
    assert all(r.split()[2] in ("magnitude", "channel") and 0 < float(r.split()[3]) <= 1 for r in layer_rows)
    out = tmp_path / "export"
    assert cli("--allow-import", "model_zoo", "export", runs / "m", "--out", out, "--epochs", "1") == 0
    model = load_exported(out)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("factory,structures", [("resnet18", "[unstructured, channel]"),
                                                ("mobilenet_v2", "[unstructured, channel, 2:4]")])
def test_standard_architectures_search_on_mnist_sized_images_and_export(factory, structures, tmp_path):
    """ResNet-18 (residual adds, BN) and MobileNetV2 (depthwise convs, inverted residuals) from the papers' block
    structure, at reduced width, through the CLI on 28×28 single-channel images: search, then export runs."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(48, 1, 28, 28)).astype(np.float32), np.arange(48) % 4
    np.savez(tmp_path / "d.npz", x_train=x[:32], y_train=y[:32], x_val=x[32:], y_val=y[32:])
    runs, kwargs = tmp_path / "runs", json.dumps(TINY[factory]).replace(" ", "")
    assert cli("--allow-import", "model_zoo", "search", "--space", "model", "--strategy", "random", "--budget", "2",
               "--name", "m", "--runs-dir", runs, "--set", f"space.factory=model_zoo:{factory}",
               "--set", f"space.factory_kwargs={kwargs}", "--set", "space.group_by=block",
               "--set", "space.target_sparsity=0.5", "--set", f"space.structures={structures}",
               "--set", "data.name=npz", "--set", f"data.path={tmp_path / 'd.npz'}",
               "--set", "train.epochs=1", "--quiet") == 0
    trials = [json.loads(line) for line in (runs / "m" / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 2 and {t["status"] for t in trials} <= {"ok", "infeasible"}
    assert all(abs(t["metrics"]["sparsity"] - 0.5) <= 0.01 for t in trials if t["status"] == "ok")
    if any(t["status"] == "ok" for t in trials):
        assert cli("--allow-import", "model_zoo", "export", runs / "m", "--out", tmp_path / "e", "--epochs", "1") == 0
        assert load_exported(tmp_path / "e")(torch.zeros(2, 1, 28, 28)).shape == (2, 4)


def test_an_arch_whose_nm_layers_exceed_the_target_is_infeasible_not_failed():
    s = space("mobilenet_v2", group_by="type", structures=["unstructured", "2:4"], target_sparsity=0.9)
    arch = s.sample(np.random.default_rng(0)).replace(**{"conv1x1.structure": "2:4"})
    result = run_trial(s, Objective(), tiny_context(), TrialTask(0, arch, seed=0))
    assert result.status == "infeasible" and "target_sparsity=0.9" in result.error
