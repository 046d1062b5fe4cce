"""Robust timing (ops.timing.robust_ms) on a fake clock, the noise floor of a profile, and the onnxruntime runtime
of `measured` (zero-product folding: dead branches cost nothing). No wall-clock time is asserted."""
import platform
import subprocess
import sys

import numpy as np
import pytest
from torch import nn

from conftest import cli
from sparsenas.assemble import resolve
from sparsenas.errors import ConfigError
from sparsenas.hardware import ModelIO, Target
from sparsenas.hardware.base import threads
from sparsenas.hardware.lut import LatencyTable, profile
from sparsenas.hardware.measured import MeasuredLatency
from sparsenas.ops import timing
from sparsenas.spaces.nb201 import NB201Space, parse_arch_str
from sparsenas.spaces.tas import TasSpace


class FakeClock:
    """perf_counter that only the timed callables advance: each call costs `base` s, and `slow` s more on the
    calls `busy(i)` picks (interference), after `cold` slower first calls (warm-up)."""

    def __init__(self, base, slow, busy, cold=0):
        self.now, self.calls, self.base, self.slow, self.busy, self.cold = 0.0, 0, base, slow, busy, cold

    def __call__(self):
        return self.now

    def work(self):
        self.calls += 1
        self.now += self.base * (3 if self.calls <= self.cold else 1) + (self.slow if self.busy(self.calls) else 0)


def test_robust_estimate_ignores_interference_that_the_median_does_not(monkeypatch):
    clock = FakeClock(1e-3, 4e-3, busy=lambda i: i % 3 != 0, cold=4)  # two calls in three interfered with
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    t = timing.robust_ms([clock.work], warmup=3, repeats=30, pin=False)[0]
    assert t.ms == pytest.approx(1.0) and t.median == pytest.approx(5.0) and t.spread == pytest.approx(4.0)
    assert t.noise == 0 and t.repeats == 30


def test_repeats_grow_while_the_halves_disagree(monkeypatch):
    clock = FakeClock(1e-3, 1e-3, busy=lambda i: i % 2 == 0)  # every even call slow: the halves disagree
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    t = timing.robust_ms([clock.work], warmup=0, repeats=8, max_repeats=40, pin=False)[0]
    assert t.repeats == 40 and t.noise == pytest.approx(1.0)
    quiet = FakeClock(1e-3, 0, busy=lambda i: False)
    monkeypatch.setattr(timing.time, "perf_counter", quiet)
    assert timing.robust_ms([quiet.work], warmup=0, repeats=8, max_repeats=40, pin=False)[0].repeats == 8


def test_interleaved_rounds_time_every_callable_alike(monkeypatch):
    clock = FakeClock(1e-3, 0, busy=lambda i: False)
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    a, b = timing.robust_ms([clock.work, lambda: (clock.work(), clock.work())], warmup=1, repeats=6, pin=False)
    assert (a.ms, b.ms) == pytest.approx((1.0, 2.0)) and a.repeats == b.repeats == 6


def test_nothing_to_time_is_no_timings():  # a profiled arch whose kernels are all in the table already
    assert timing.robust_ms([], warmup=3, repeats=5) == []


def test_pinning_restores_the_affinity():
    import os

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity here")
    before = os.sched_getaffinity(0)
    with timing.pinned():
        assert len(os.sched_getaffinity(0)) <= len(before)
    assert os.sched_getaffinity(0) == before


def test_realtime_priority_is_taken_only_for_one_thread_and_given_back(monkeypatch):
    import os

    if not hasattr(os, "SCHED_FIFO"):
        pytest.skip("no real-time scheduling here")
    before = os.sched_getscheduler(0)
    calls = []
    monkeypatch.setattr(os, "sched_setscheduler", lambda pid, policy, param: calls.append(policy))
    with threads(2), timing.prioritised() as granted:
        assert not granted and not calls  # torch's worker threads would run at normal priority
    with threads(1), timing.prioritised() as granted:
        assert granted and calls == [os.SCHED_FIFO]
    assert calls == [os.SCHED_FIFO, before]
    with threads(1):
        assert all(t.realtime for t in timing.robust_ms([lambda: None], repeats=2))

    def refuse(*args):
        raise PermissionError("not root")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    with threads(1), timing.prioritised() as granted:
        assert not granted
    with threads(1):
        assert not any(t.realtime for t in timing.robust_ms([lambda: None], repeats=2, realtime=True))


FAULTS = """
import ctypes, resource, sys, torch
from sparsenas.ops import timing
mallopt = ctypes.CDLL(None).mallopt  # glibc's starting thresholds (128 KiB), held: its dynamic rule may have
mallopt(timing.M_MMAP_THRESHOLD, 128 << 10), mallopt(timing.M_TRIM_THRESHOLD, 128 << 10)  # raised them already
if sys.argv[1] == "glibc-default":
    timing.steady_allocator = lambda: False
def work():  # 20 MiB in 1 MiB blocks, above glibc's starting mmap threshold: mapped and unmapped on every call
    blocks = [torch.ones(262_144) for _ in range(20)]
timing.robust_ms([work], repeats=4)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
timing.robust_ms([work], repeats=8)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_timing_holds_the_allocator_steady_so_freed_activations_are_not_page_faulted_in_again():
    """A process at glibc's starting thresholds, as a fresh `sparsenas export` or lut profile usually is: glibc
    maps the blocks afresh and faults them in on every call unless the allocator is held steady."""
    faults = {mode: int(subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("steady", "glibc-default")}
    assert faults["steady"] < 2_000 < 20_000 < faults["glibc-default"]


def test_profile_records_its_noise_floor_and_the_cli_prints_it(tmp_path, capsys):
    table = profile(TasSpace(C=4, depth=8), Target(), ModelIO((1, 8, 8), 10), archs=1, calibration=2, warmup=0,
                    repeats=1, log=lambda m: None)
    noise = table.meta["noise"]
    assert 0 <= noise["kernels_median"] <= noise["kernels_p90"] and noise["networks_median"] >= 0
    assert len(noise["load_average"]) == 3 and all("noise" in k for k in table.kernels.values())
    assert 0 <= noise["realtime"] <= 1
    out = tmp_path / "t.json"
    assert cli("latency", "profile", "--space", "tas", "--set", "space.C=4", "--set", "space.depth=8",
               "--archs", 1, "--calibration", 0, "--out", out, "--quiet") == 0
    assert "noise floor: kernels" in capsys.readouterr().out
    assert LatencyTable.load(out).meta["noise"]["networks_median"] is None


def test_calibration_passes_bracket_the_kernels_and_keep_the_lower_so_a_busy_spell_changes_nothing(monkeypatch):
    """The calibration networks are timed in two passes, before the kernels are profiled and (reversed) after;
    a busy spell as long as a whole pass (every network 3x slower in it) leaves the fit as the quiet machine's."""
    from sparsenas.hardware import kernels, measured

    def fake_timing(ms):
        return timing.Timing(ms, ms, 0.0, 0.0, 1)

    events = []

    def kernel_timings(fns, *a, **k):
        events.append("kernels")
        return [fake_timing(0.1) for _ in fns]

    def network_timings(burst):
        def robust_ms(fns, *a, **k):
            module = next(c.cell_contents for c in fns[0].__closure__ if isinstance(c.cell_contents, nn.Module))
            quiet = 0.5 + 1e-4 * sum(p.numel() for p in module.parameters())  # differs between the networks
            events.append(quiet)
            return [fake_timing(quiet * (3 if burst and "kernels" not in events else 1))]
        return robust_ms

    def calibration(burst):
        events.clear()
        monkeypatch.setattr(measured, "robust_ms", network_timings(burst))
        return profile(TasSpace(C=4, depth=8), Target(), ModelIO((1, 8, 8), 10), archs=1, calibration=3, warmup=0,
                       repeats=1, log=lambda m: None).calibration

    monkeypatch.setattr(kernels, "robust_ms", kernel_timings)
    assert calibration(burst=True) == pytest.approx(calibration(burst=False))
    networks = [e for e in events if e != "kernels"]
    assert events[3] == "kernels" and events[-3:] == networks[3:] == networks[:3][::-1] and len(set(networks)) == 3


def test_kernel_passes_alternate_and_keep_the_lowest_so_busy_passes_change_nothing(monkeypatch):
    """With `passes`, every arch's new kernels are timed again after all archs (reversed, then forward again),
    each keeping its lowest time: with busy spells over the whole first and third passes (3x slower), the kernels
    end at the quiet machine's times, which one pass keeps wrong."""
    from sparsenas.hardware import kernels

    order = []

    def robust_ms(fns, *a, **k):
        signatures = [fn.__defaults__[0].signature for fn in fns]  # replay_timings' lambda c=c: c.call(...)
        order.append(tuple(signatures))
        slow = 1 if 3 < len(order) <= 6 else 3  # one call per arch and pass: the second pass is the quiet one
        return [timing.Timing(slow * quiet(s), slow * quiet(s), 0.0, 0.0, 1) for s in signatures]

    def quiet(signature):
        return 0.01 * (1 + len(signature) % 7)

    def kernel_ms(passes):
        order.clear()
        table = profile(TasSpace(C=4, depth=8), Target(), ModelIO((1, 8, 8), 10), archs=3, calibration=0,
                        warmup=0, repeats=1, passes=passes, log=lambda m: None)
        return {s: k["ms"] for s, k in table.kernels.items()}

    monkeypatch.setattr(kernels, "robust_ms", robust_ms)
    assert kernel_ms(1) == {s: 3 * quiet(s) for s in kernel_ms(1)}
    assert kernel_ms(3) == {s: quiet(s) for s in kernel_ms(3)}
    first = order[:3]
    assert sum(map(len, first)) > 0 and order[3:] == first[::-1] + first  # every kernel timed again, alternating
    assert not set(first[0]) & set(first[1] + first[2])  # each arch's new kernels only


# -- onnxruntime ------------------------------------------------------------------------------------------------
NB201 = NB201Space(mode="train", C=4, N=1)
IO = ModelIO((3, 8, 8), 10)
LIVE = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


def nb201(text):
    return NB201.validate(dict(parse_arch_str(text)))


def ops_after_folding(text):
    from sparsenas.hardware.runtimes import onnx_model

    pytest.importorskip("onnxruntime")
    measured = MeasuredLatency(NB201, Target(), IO, runtime="onnxruntime")
    module, _ = measured.module(nb201(text))
    from sparsenas.hardware.base import example_input

    return sorted(n.op_type for n in onnx_model(module, example_input(IO, Target())).graph.node)


def test_onnx_export_drops_the_work_of_dead_branches():
    # node 1 feeds only a `none` edge: its 3x3 conv is dead; swapping it for a 1x1 conv changes nothing that runs
    dead_a = "|nor_conv_3x3~0|+|none~0|none~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
    dead_b = "|nor_conv_1x1~0|+|none~0|none~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
    assert ops_after_folding(dead_a) == ops_after_folding(dead_b)
    assert "Mul" not in ops_after_folding(dead_a)
    assert ops_after_folding(LIVE).count("Conv") > ops_after_folding(dead_a).count("Conv")


def test_onnxruntime_measures_the_same_function():
    import torch

    from sparsenas.hardware.base import example_input
    from sparsenas.hardware.runtimes import RUNTIMES

    pytest.importorskip("onnxruntime")
    measured = MeasuredLatency(NB201, Target(), IO, warmup=0, repeats=2, runtime="onnxruntime")
    arch = nb201("|nor_conv_3x3~0|+|none~0|none~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|")
    module, _ = measured.module(arch)
    x = example_input(IO, Target())
    y = RUNTIMES.get("onnxruntime")(module, x, Target())()[0]
    with torch.no_grad():
        assert np.allclose(y, module(x).numpy(), atol=1e-4)
    assert measured.predict(arch) > 0


def test_runtime_is_checked_by_the_schema_and_the_predictor(capsys):
    base = {"space": {"name": "tas", "C": 4, "depth": 8}, "strategy": {"name": "random"}}
    with pytest.raises(ConfigError, match="latency.runtime must be one of torch, onnxruntime"):
        resolve([{**base, "latency": {"predictor": "measured", "runtime": "tvm"}}])
    with pytest.raises(ConfigError, match="runtime 'onnxruntime' does not work with predictor 'lut'"):
        resolve([{**base, "latency": {"predictor": "lut", "runtime": "onnxruntime"}}])
    assert resolve([{**base, "latency": {"predictor": "measured", "runtime": "onnxruntime"}}])
    assert cli("search", "--space", "tas", "--strategy", "random", "--budget", 1, "--set", "latency.runtime=tvm") == 2
    err = capsys.readouterr().err.strip()
    assert "latency.runtime must be one of" in err and "\n" not in err
