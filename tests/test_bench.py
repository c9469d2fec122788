"""The cost benchmark (tiny CPU mode, as CI runs it), real-size FLOP counts on the meta device, budget logic."""

from __future__ import annotations

import json
import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))

from models import InputError  # noqa: E402
from models.budget import CostModel, measure_costs  # noqa: E402


def test_tiny_benchmark_writes_json_markdown_and_plot(tmp_path):
    import benchmark

    result = benchmark.main(["--ns", "1,2,4", "--repeats", "1", "--out", str(tmp_path)])
    for name in ("results.json", "results.md", "candidates_vs_time.png"):
        assert (tmp_path / name).stat().st_size > 0
    tiny = json.loads((tmp_path / "results.json").read_text())["tiny"]
    assert tiny["device"] == "cpu" and tiny["dtype"] == "fp32"
    assert set(tiny["timing"]["ms"]) == {"vhs", "mllm_clip", "mllm_ae", "vhs_reference_style"}
    flops = result["tiny"]["flops_per_candidate"]
    assert flops["vhs"] < flops["mllm_ae"] < flops["mllm_clip"]
    ns = [row["n_vhs"] for row in tiny["paper_shaped_budgets"]]
    assert ns == sorted(ns) and ns[-1] >= 1


def test_real_size_flops_counted_on_the_meta_device():
    import torch

    import benchmark

    model, verifiers, clip, text_encoder = benchmark.real_models("sana-sprint-1.6b", "meta", torch.bfloat16)
    report = benchmark.flops_report(model, verifiers, clip, text_encoder, layer=7, size=1024, text_tokens=520)
    stages = report["stages"]
    whole = (stages["dit_all_blocks"] + stages["dit_head_only"]) / 1e9
    assert whole == pytest.approx(2966.7, abs=0.1)  # the whole 1.6B DiT forward at 1024 px
    assert stages["dit_prefix_to_l"] + stages["dit_resume_from_l"] == pytest.approx(
        stages["dit_all_blocks"] + stages["dit_head_only"], rel=1e-6), "prefix + resume must be exactly one forward"
    assert stages["ae_decode"] / 1e12 == pytest.approx(8.37, abs=0.01)
    before, image, after = report["layout_tokens"]["vhs"]
    assert (before, image) == (55, 1024) and 38 <= after <= 46
    assert report["per_candidate"]["vhs"] < report["per_candidate"]["mllm_clip"]
    resident = benchmark.resident_weights(model, verifiers, clip, text_encoder)
    vhs, pixel = resident["vhs"], resident["mllm_clip"]
    assert vhs["bf16"] == pytest.approx(9601, abs=1) and pixel["bf16"] - vhs["bf16"] == pytest.approx(577, abs=2)
    assert vhs["fp8_storage_text_encoder_offloaded"] < vhs["fp8_storage"] < 0.65 * vhs["bf16"]


def test_cost_model_picks_the_largest_n_that_fits():
    cost = CostModel(encode_ms=20, fixed_ms=10, per_candidate_ms=50, winner_ms=70, device="cpu", dtype="fp32",
                     height=1024, width=1024, layer=7)
    assert cost.max_candidates(550) == 9  # 550 - 100 = 450 -> 9 candidates of 50 ms
    assert cost.total_ms(9) == 550
    assert cost.max_candidates(149) == 0 and cost.max_candidates(150) == 1
    assert cost.max_candidates(10**9, cap=64) == 64
    with pytest.raises(InputError, match="positive"):
        cost.max_candidates(0)


def test_measure_costs_with_an_injected_clock(sana, hidden_verifier, res):
    """A fake clock that advances 10 ms per candidate row seen makes the fit exact and deterministic."""
    now = [0.0]
    real_prefix = sana.prefix

    def counting_prefix(*args, **kwargs):
        hidden = real_prefix(*args, **kwargs)
        now[0] += 0.010 * len(hidden) + 0.005
        return hidden

    sana.prefix = counting_prefix
    try:
        cost = measure_costs(sana, hidden_verifier, "a cat", layer=1, height=res, width=res, probe=(1, 3), repeats=1,
                             clock=lambda: now[0])
    finally:
        del sana.prefix
    assert cost.per_candidate_ms == pytest.approx(10.0)
    assert cost.fixed_ms == pytest.approx(5.0)
    assert cost.encode_ms == 0 and cost.winner_ms == 0
    with pytest.raises(InputError, match="probe"):
        measure_costs(sana, hidden_verifier, "a cat", 1, res, res, probe=(3, 3))


def test_gpu_timing_summary_fits_costs_budgets_and_share_of_peak():
    """The real-size GPU path (never run on CI): whole-run times at several N become a per-candidate cost, the N that
    fits each budget and the share of the bf16 peak, and render as markdown."""
    import benchmark

    ms = {"vhs": {1: 110.0, 2: 120.0, 4: 140.0, 8: 180.0}, "mllm_clip": {1: 150.0, 2: 200.0, 4: 300.0, 8: 500.0},
          "mllm_ae": {1: 120.0, 2: 140.0, 4: 180.0, 8: 260.0}, "vhs_reference_style": {1: 300.0, 2: 500.0, 4: 900.0,
                                                                                          8: 1700.0}}
    flops = {"vhs": 2.1086e12, "mllm_clip": 12.2417e12, "mllm_ae": 3.8808e12}
    peak = benchmark.bf16_peak("NVIDIA H100 80GB HBM3")
    summary = benchmark.timing_summary(ms, flops, [550, 1100, 1650], peak)
    vhs = summary["vhs"]
    assert vhs["per_candidate_ms"] == pytest.approx(10.0) and vhs["fixed_ms"] == pytest.approx(100.0)
    assert vhs["n_for_budget"] == {550: 45, 1100: 100, 1650: 155}
    assert vhs["achieved_tflops"] == pytest.approx(210.86) and vhs["share_of_peak"] == pytest.approx(210.86 / 989.4)
    assert summary["mllm_clip"]["n_for_budget"][550] == 9 and "vhs_reference_style" not in summary
    memory = {p: {n: 1000.0 * n for n in ms["vhs"]} for p in ms}
    md = "\n".join(benchmark.timing_lines({"device": "NVIDIA H100 80GB HBM3", "dtype": "bf16", "ms": ms,
                                           "peak_memory_mb": memory, "summary": summary}))
    assert "| vhs | 10.00 | 100.0 | 211 | 21.3% | 45 | 100 | 155 |" in md
    assert benchmark.bf16_peak("some unknown GPU") is None
