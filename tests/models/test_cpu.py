"""What the CPU can do: bf16 flags from /proc/cpuinfo, and whether bf16 is measured to pay."""

from __future__ import annotations

import math

import pytest
import torch

from llm_embedder.models import cpu, loading


@pytest.fixture
def fresh_cache():
    cpu.cpu_bf16_pays.cache_clear()
    yield
    cpu.cpu_bf16_pays.cache_clear()


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu.cpu_bf16_flags.__wrapped__(str(info)) == ("amx_bf16",)
    info.write_text("flags\t: fpu avx512f avx512_bf16\n")
    assert cpu.cpu_bf16_flags.__wrapped__(str(info)) == ("avx512_bf16",)
    info.write_text("flags\t: fpu avx2 fma\n")
    assert cpu.cpu_bf16_flags.__wrapped__(str(info)) == ()
    assert cpu.cpu_bf16_flags.__wrapped__(str(tmp_path / "missing")) == ()


def test_bf16_pays_only_with_instructions_and_a_measured_gain(monkeypatch, fresh_cache):
    def no_probe():
        raise AssertionError("the probe must not run without bf16 instructions")

    monkeypatch.setattr(cpu, "cpu_bf16_flags", lambda: ())
    monkeypatch.setattr(cpu, "bf16_speedup", no_probe)
    assert cpu.cpu_bf16_pays() is False

    # About the two avx512_bf16 hosts of docs/experiments/speed (AMD Zen 5 faster in bf16, Intel slower).
    monkeypatch.setattr(cpu, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    for speedup, pays in [(2.83, True), (0.79, False), (cpu.BF16_MIN_SPEEDUP, True), (1.19, False)]:
        cpu.cpu_bf16_pays.cache_clear()
        monkeypatch.setattr(cpu, "bf16_speedup", lambda speedup=speedup: speedup)
        assert cpu.cpu_bf16_pays() is pays


def test_probe_returns_a_time_ratio():
    ratio = cpu.bf16_speedup(tokens=32, hidden=16, repeats=2)
    assert math.isfinite(ratio) and ratio > 0


def test_fast_dtype_follows_the_measurement(monkeypatch):
    device = torch.device("cpu")
    monkeypatch.setattr(loading, "cpu_bf16_pays", lambda: True)
    assert loading.resolve_dtype("fast", device) == torch.bfloat16
    monkeypatch.setattr(loading, "cpu_bf16_pays", lambda: False)
    assert loading.resolve_dtype("fast", device) == torch.float32
    assert loading.resolve_dtype(None, device) == torch.float32  # auto stays exact on a CPU
