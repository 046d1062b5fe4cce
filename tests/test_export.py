"""Export: deployable modules match the masked model, weights load with weights_only, CLI errors."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import cli
from sparsenas.export import load_exported
from sparsenas.ops.channel_removal import GatherDepthwise
from sparsenas.ops.deploy import ChannelSlice, CSRLinear, fits_2_4, to_deployable
from sparsenas.ops.formats import FORMATS, densified
from sparsenas.ops import SparseConv2d, SparseLinear


def _mixed_net():
    torch.manual_seed(0)
    return nn.Sequential(
        SparseConv2d(2, 8, 3, padding=1, keep=0.3, mask_mode="magnitude"), nn.BatchNorm2d(8), nn.ReLU(),
        SparseConv2d(8, 8, 3, padding=1, keep=0.5, mask_mode="channel"), nn.ReLU(),
        SparseConv2d(8, 8, 3, padding=1, groups=8, keep=0.5, mask_mode="channel"), nn.Flatten(),
        SparseLinear(8 * 16, 64, keep=0.1, mask_mode="random"), nn.ReLU(),
        SparseLinear(64, 32, mask_mode="2:4"), nn.ReLU(),
        SparseLinear(32, 16, keep=0.4, mask_mode="channel"), nn.ReLU(),
        SparseLinear(16, 5, keep=0.2, mask_mode="scores"), nn.Linear(5, 3))


@pytest.mark.parametrize("csr", ["always", "auto", "never"])
def test_exported_outputs_match_masked_model(csr):
    model = _mixed_net().eval()
    model[1].running_mean.uniform_(-1, 1)
    x = torch.randn(32, 2, 4, 4)
    dep, plan = to_deployable(model, x, csr=csr)
    diff = (dep(x) - model(x)).abs().max().item()
    assert diff < 1e-4
    actions = {name: e["action"] for name, e in plan.items()}
    assert actions["0"] == actions["3"] == actions["5"] == actions["9"] == "dense"  # no 2:4 kernel on the CPU
    if csr == "always":
        assert actions["7"] == actions["13"] == "csr" and isinstance(dep[7], CSRLinear)
    if csr == "never":
        assert "csr" not in actions.values()
    # channel masks: the producer and its consumers shrink, through ReLU, a depthwise conv and a flatten
    assert dep[3].out_channels == 4 and len(plan["3"]["kept_out"]) == 4
    dw, first = dep[5], plan["5"]["kept_out"][0]  # the depthwise conv also drops its own empty filters
    assert plan["5"]["kept_in"] == plan["3"]["kept_out"] and isinstance(dw, GatherDepthwise)
    assert dw.conv.groups == dw.conv.out_channels == len(plan["5"]["kept_out"]) < 4
    assert dep[7].in_features == dw.conv.out_channels * 16 and plan["7"]["kept_in"][:16] == list(
        range(first * 16, first * 16 + 16))
    assert dep[11].out_features == round(0.4 * 16) and dep[13].in_features == round(0.4 * 16)
    assert not any(n.endswith("scores") or "mask_buf" in n for n in dep.state_dict())


def test_saved_weights_load_weights_only_and_rebuild(tmp_path):
    model = _mixed_net().eval()
    x = torch.randn(8, 2, 4, 4)
    dep, plan = to_deployable(model, x, csr="always")
    torch.save(dep.state_dict(), tmp_path / "model.pt")
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    fresh, _ = to_deployable(_other_seed_net(), plan=plan)  # different weights and CSR sizes
    fresh.load_state_dict(state)
    assert (fresh.eval()(x) - model(x)).abs().max().item() < 1e-4


def _other_seed_net():
    torch.manual_seed(1)
    net = _mixed_net()
    for m in net.modules():
        if isinstance(m, SparseLinear) and m.mask_mode == "random":
            m.keep = 0.3  # a different nnz than the saved CSR
    return net


def _fake_run(tmp_path, status):
    from sparsenas import spaces  # noqa: F401
    from sparsenas.assemble import resolve
    from sparsenas.config import dump
    from sparsenas.assemble import build_space

    config = resolve([{"space": {"name": "dass", "C": 4, "layers": 1, "stem_multiplier": 1, "mask": "random"},
                       "strategy": {"name": "random"},
                       "train": {"epochs": 1}, "data": {"limit": 64}}])
    arch = build_space(config).sample(np.random.default_rng(0))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump(config))
    record = {"trial": 0, "arch": dict(arch), "arch_id": arch.arch_id, "label": "x", "status": status,
              "metrics": {"val_acc": 0.5}, "seed": 3, "duration_s": 1.0, "worker": "local", "error": None}
    (run / "trials.jsonl").write_text(json.dumps(record) + "\n")
    if status == "ok":
        (run / "best.json").write_text(json.dumps({"trial": 0, "arch": dict(arch), "arch_id": arch.arch_id,
                                                   "metrics": record["metrics"]}))
    return run


def test_export_of_run_without_success_is_one_line_exit_2(tmp_path, capsys):
    run = _fake_run(tmp_path, "failed")
    assert cli("export", run) == 2
    err = capsys.readouterr().err
    assert "has no successful trial to export" in err and err.count("\n") == 1
    assert cli("export", run, "--trial", 0) == 2
    assert "is failed, not ok" in capsys.readouterr().err
    assert cli("export", tmp_path / "nope") == 2
    assert cli("export", run, "--batch-size", 0) == 2
    assert "--batch-size must be >= 1" in capsys.readouterr().err


def test_cli_export_end_to_end(tmp_path, capsys):
    run = _fake_run(tmp_path, "ok")
    assert cli("export", run, "--out", tmp_path / "exp", "--format", "torchscript", "--batch-size", "8") == 0
    assert "exported trial 0" in capsys.readouterr().out
    info = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert info["max_abs_diff"] < 1e-4 and info["trial"] == 0 and info["seed"] == 3
    assert info["target"] == {"batch_size": 8, "threads": 1, "device": "cpu"}
    assert info["layers"] and all(r["nnz"] <= r["weights"] and r["flops_sparse"] <= r["flops"] for r in info["layers"])
    state = torch.load(tmp_path / "exp" / "model.pt", weights_only=True)
    assert state and not any("scores" in k for k in state)
    dep = load_exported(tmp_path / "exp")
    x = torch.randn(4, *info["input_shape"])
    assert dep(x).shape == (4, 10)
    assert info["artifact"]["file"] == "model.torchscript.pt" and info["artifact"]["max_abs_diff"] < 1e-4
    assert torch.jit.load(str(tmp_path / "exp" / "model.torchscript.pt"))(x).shape == (4, 10)


def test_torchscript_artifact_runs_without_sparsenas_and_keeps_csr(tmp_path):
    model = _mixed_net().eval()
    x = torch.randn(8, 2, 4, 4)
    dep, plan = to_deployable(model, x, csr="always")
    info = FORMATS.get("torchscript")(dep, x, tmp_path)
    scripted = torch.jit.load(str(tmp_path / info["file"]))
    assert isinstance(dep[7], CSRLinear) and "sparse_compressed_tensor" in getattr(scripted, "7").code  # CSR kept
    x5 = torch.randn(5, 2, 4, 4)  # another batch size than traced
    assert (scripted(x5) - model(x5)).abs().max().item() < 1e-4


def test_onnx_artifact_stores_sparse_layers_dense_and_says_which(tmp_path):
    ort = pytest.importorskip("onnxruntime")  # the onnx extra
    model = _mixed_net().eval()
    x, x5 = torch.randn(8, 2, 4, 4), torch.randn(5, 2, 4, 4)
    dep, plan = to_deployable(model, x, csr="always")
    info = FORMATS.get("onnx")(dep, x, tmp_path)
    csr_layers = sorted(n for n, e in plan.items() if e["action"] == "csr")
    assert sorted(info["dense_layers"]) == csr_layers and densified(dep)[1] == info["dense_layers"]
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert abs(session.run(None, {"x": x5.numpy()})[0] - model(x5).detach().numpy()).max() < 1e-4


def test_a_bare_sparse_layer_is_exported_too():
    torch.manual_seed(0)
    layer = SparseLinear(64, 32, keep=0.1, mask_mode="magnitude").eval()
    dep, plan = to_deployable(layer, csr="always")
    x = torch.randn(5, 64)
    assert isinstance(dep, CSRLinear) and plan[""]["action"] == "csr"
    assert (dep(x) - layer(x)).abs().max().item() < 1e-5
    assert int(dep.values.numel()) == layer.k


def test_channel_slice_without_example_or_on_sequence_input():
    torch.manual_seed(0)
    layer = SparseLinear(8, 6, keep=0.5, mask_mode="channel").eval()
    x = torch.randn(2, 5, 8)
    for example in (None, x):  # no input to trace; a 3-D input the channel analysis does not handle
        dep, plan = to_deployable(layer, example)
        assert isinstance(dep, ChannelSlice) and (dep(x) - layer(x)).abs().max().item() < 1e-6
        assert plan[""]["action"] == "channel" and plan[""]["note"]


def test_nm_stays_dense_off_cuda():
    torch.manual_seed(0)
    lin = SparseLinear(16, 4, mask_mode="1:4")
    _, plan = to_deployable(lin, device="cpu")
    assert plan[""]["action"] == "dense"
    plain, _ = to_deployable(lin, plan={"": {"action": "dense"}})
    assert fits_2_4(plain) is None
    wide, _ = to_deployable(SparseLinear(16, 4, mask_mode="3:4"), plan={"": {"action": "dense"}})
    assert "not a 2:4 pattern" in fits_2_4(wide)
