"""The cost benchmark: the tiny section, real-size FLOP counts on the meta device, the timing path on a CPU at toy
size (every pipeline, warm-ups, fp8 storage, compile tracing, deadlines, interruptions), the GPU session script's
rehearsal, and the budget logic."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from bench import benchmark, timing
from bench.flops import flops_report, resident_weights
from bench.sizes import REAL, build
from conftest import ROOT
from models import InputError
from models.budget import CostModel, measure_costs

SMALL_TIMING = ["--timing", "--models", "small", "--device", "cpu", "--skip-tiny", "--repeats", "1"]


def stage_of(out) -> dict:
    timings = json.loads((out / "results.json").read_text())["timings"]
    assert len(timings) == 1
    return next(iter(timings.values()))


def test_tiny_benchmark_writes_json_markdown_and_plot(tmp_path):
    result = benchmark.main(["--tiny-ns", "1,2,4", "--repeats", "1", "--out", str(tmp_path)])
    for name in ("results.json", "results.md", "candidates_vs_time.png", "bench.log"):
        assert (tmp_path / name).stat().st_size > 0
    tiny = json.loads((tmp_path / "results.json").read_text())["tiny"]
    assert tiny["device"] == "cpu" and tiny["dtype"] == "fp32"
    assert set(tiny["timing"]["ms"]) == {"vhs", "mllm_clip", "mllm_ae", "vhs_reference_style"}
    assert all(set(ms) == {"1", "2", "4"} for ms in tiny["timing"]["ms"].values())
    flops = result["tiny"]["flops_per_candidate"]
    assert flops["vhs"] < flops["mllm_ae"] < flops["mllm_clip"]
    ns = [row["n_vhs"] for row in tiny["paper_shaped_budgets"]]
    assert len(ns) == 3 and ns == sorted(ns)  # how many fit depends on this machine's load; their order does not


def test_real_size_flops_counted_on_the_meta_device():
    m = build(REAL, "sana-sprint-1.6b", "meta", torch.bfloat16)
    assert m.verifiers["clip"].clip is not None, "the CLIP baseline must have its vision tower"
    report = flops_report(m)
    stages = report["stages"]
    whole = (stages["dit_all_blocks"] + stages["dit_head_only"]) / 1e9
    assert whole == pytest.approx(2966.7, abs=0.1)  # the whole 1.6B DiT forward at 1024 px
    assert stages["dit_prefix_to_l"] + stages["dit_resume_from_l"] == pytest.approx(
        stages["dit_all_blocks"] + stages["dit_head_only"], rel=1e-6), "prefix + resume must be exactly one forward"
    assert stages["ae_decode"] / 1e12 == pytest.approx(8.37, abs=0.01)
    # the text encoder is counted at the length the timed runs encode (Qwen2.5's tokenizer standing in for Gemma's)
    assert report["text_tokens"] == m.model.text_tokens() and 480 <= report["text_tokens"] <= 540
    before, image, after = report["layout_tokens"]["vhs"]
    assert (before, image) == (55, 1024) and 38 <= after <= 46
    assert report["per_candidate"]["vhs"] / 1e9 == pytest.approx(2108.6, abs=0.1)
    assert report["per_candidate"]["mllm_clip"] / 1e9 == pytest.approx(12241.7, abs=0.1)
    resident = resident_weights(m)
    vhs, pixel = resident["vhs"], resident["mllm_clip"]
    assert vhs["bf16"] == pytest.approx(9601, abs=1) and pixel["bf16"] - vhs["bf16"] == pytest.approx(577, abs=2)
    assert vhs["fp8_storage_text_encoder_offloaded"] < vhs["fp8_storage"] < 0.65 * vhs["bf16"]


def test_timing_runs_every_pipeline_on_a_cpu_and_writes_as_it_goes(tmp_path, monkeypatch):
    """--timing on a CPU at toy size: all four pipelines (the CLIP baseline with its tower) warmed up and timed, with
    fp8 weight storage; the files are rewritten after each measurement; --append adds a stage, keeping the first."""
    writes = []
    real_write = benchmark.write_outputs
    monkeypatch.setattr(benchmark, "write_outputs", lambda result, out: (writes.append(1), real_write(result, out)))
    benchmark.main([*SMALL_TIMING, "--ns", "1,3", "--baseline-ns", "1,2", "--reference-ns", "1",
                    "--weight-storage", "fp8_e4m3fn", "--out", str(tmp_path)])
    stage = stage_of(tmp_path)
    assert stage["weight_storage"] == "fp8_e4m3fn" and stage["compile"] is None and stage["device"]
    assert stage["text_tokens"] > 0 and stage["matmul_peak"]["tflops"] > 0 and "matmul" in stage["matmul_peak"]["method"]
    pipes = stage["pipelines"]
    expected = {"vhs": {"1", "3"}, "mllm_clip": {"1", "2"}, "mllm_ae": {"1", "2"}, "vhs_reference_style": {"1"}}
    assert {p: set(e["ms"]) for p, e in pipes.items()} == expected
    assert all(e["error"] is None and e["warmup_s"] is not None and not e["skipped"] for e in pipes.values())
    assert all(ms > 0 for e in pipes.values() for ms in e["ms"].values())
    assert len(writes) >= 1 + 4 + 7, "results are rewritten after every warm-up and every measurement"
    assert set(stage["summary"]) == {"vhs", "mllm_clip", "mllm_ae"}
    md = (tmp_path / "results.md").read_text()
    assert "weights stored as fp8_e4m3fn" in md and "Measured matmul peak" in md
    assert "vhs: N=1" in (tmp_path / "bench.log").read_text()

    benchmark.main([*SMALL_TIMING, "--ns", "2", "--baseline-ns", "1", "--reference-ns", "1", "--append",
                    "--out", str(tmp_path)])
    timings = json.loads((tmp_path / "results.json").read_text())["timings"]
    assert set(timings) == {"sana-sprint-small/fp32-fp8_e4m3fn", "sana-sprint-small/fp32"}


def test_deadline_skips_what_would_overrun_and_says_why(tmp_path):
    benchmark.main([*SMALL_TIMING, "--ns", "1,2", "--baseline-ns", "1", "--reference-ns", "1", "--deadline", "0",
                    "--out", str(tmp_path)])
    pipes = stage_of(tmp_path)["pipelines"]
    assert all(not e["ms"] and set(e["skipped"]) >= {"1"} for e in pipes.values())
    assert all(why.startswith("time budget") for e in pipes.values() for why in e["skipped"].values())
    assert "vhs: N=1, 2 not run: time budget" in (tmp_path / "results.md").read_text()


def test_an_interrupted_run_keeps_what_it_measured(tmp_path, monkeypatch):
    """`timeout --signal=INT` stops a GPU stage: what was measured before is on disk."""
    calls = []
    real_measure = timing.measure

    def measure(fn, n, repeats, device):
        calls.append(n)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_measure(fn, n, repeats, device)

    monkeypatch.setattr(timing, "measure", measure)
    with pytest.raises(KeyboardInterrupt):
        benchmark.main([*SMALL_TIMING, "--ns", "1,2,3", "--baseline-ns", "1", "--reference-ns", "1",
                        "--out", str(tmp_path)])
    assert set(stage_of(tmp_path)["pipelines"]["vhs"]["ms"]) == {"1", "2"}
    assert "interrupted" in (tmp_path / "bench.log").read_text()


def test_a_recompile_while_timing_is_an_error_not_a_silent_slowdown():
    """After the warm-up, compiled code must not recompile during the timed runs: the stage records an error."""
    double = torch.compile(lambda x: x * 2, backend="eager", dynamic=True)

    def run(n: int) -> None:  # N=3 brings another dtype, which the warm-up (N=1, 2) did not compile for
        double(torch.zeros(n, dtype=torch.float64 if n == 3 else torch.float32))

    entry = timing.time_pipeline("toy", run, [1, 2, 3], 1, torch.device("cpu"), timing.Deadline(None), True, 0,
                                 lambda e: None)
    assert set(entry["ms"]) == {1, 2}
    assert entry["error"] and entry["error"].startswith("N=3:") and "ecompil" in entry["error"]


def test_gpu_session_script_rehearses_on_a_cpu(tmp_path):
    """bench/gpu_run.sh end to end in its dry mode (toy sizes, CPU, compile traced with the eager backend): every
    stage runs, all output lands flat in $OUT (what the device tool returns), and the stages add up in one report."""
    env = dict(os.environ, VHS_BENCH_DRY="1", OUT=str(tmp_path), VHS_PYTHON=sys.executable,
               VHS_BENCH_EXTRA="--ns 1,2 --baseline-ns 1 --reference-ns 1")
    done = subprocess.run(["bash", os.path.join(ROOT, "bench", "gpu_run.sh")], env=env, capture_output=True,
                          text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = {p.name for p in tmp_path.iterdir()}
    assert files == {"results.json", "results.md", "candidates_vs_time.png", "bench.log", "gpu_run.log", "env.txt"}
    timings = json.loads((tmp_path / "results.json").read_text())["timings"]
    assert set(timings) == {"sana-sprint-small/bf16", "sana-sprint-small/bf16-compile", "sana-sprint-small/fp8"}
    compiled = timings["sana-sprint-small/bf16-compile"]
    assert compiled["compile"] == "eager"
    assert all(e["error"] is None and e["graphs"] > 0 and e["ms"] for e in compiled["pipelines"].values())
    assert timings["sana-sprint-small/fp8"]["weight_storage"] == "fp8_e4m3fn"
    log = (tmp_path / "gpu_run.log").read_text()
    assert log.count(": exit 0") == 3 and "done in" in log


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


def test_timing_summary_fits_costs_budgets_and_share_of_the_measured_peak():
    """Whole-run times at several N become a per-candidate cost, the N that fits each budget and the share of the
    measured matmul peak, and render as markdown with how they were measured."""
    ms = {"vhs": {1: 110.0, 2: 120.0, 4: 140.0, 8: 180.0}, "mllm_clip": {1: 150.0, 2: 200.0, 4: 300.0, 8: 500.0},
          "mllm_ae": {1: 120.0, 2: 140.0, 4: 180.0, 8: 260.0}, "vhs_reference_style": {1: 300.0, 2: 500.0}}
    flops = {"vhs": 2.1086e12, "mllm_clip": 12.2417e12, "mllm_ae": 3.8808e12}
    summary = timing.timing_summary(ms, flops, [550, 1100, 1650], 790.0)
    vhs = summary["vhs"]
    assert vhs["per_candidate_ms"] == pytest.approx(10.0) and vhs["fixed_ms"] == pytest.approx(100.0)
    assert vhs["n_for_budget"] == {550: 45, 1100: 100, 1650: 155}
    assert vhs["achieved_tflops"] == pytest.approx(210.86) and vhs["share_of_peak"] == pytest.approx(210.86 / 790)
    assert summary["mllm_clip"]["n_for_budget"][550] == 9 and "vhs_reference_style" not in summary
    from bench.report import timing_lines

    pipes = {p: {"ms": t, "peak_memory_mb": {n: 1000.0 * n for n in t}, "skipped": {}, "error": None,
                 "warmup_s": 1.0, "graphs": None} for p, t in ms.items()}
    pipes["vhs"]["skipped"] = {256: "out of memory"}
    stage = {"sana": "sana-sprint-1.6b", "dtype": "bf16", "compile": None, "weight_storage": "default",
             "device": "NVIDIA H100 80GB HBM3", "size": 1024, "layer": 7, "text_tokens": 503, "repeats": 3,
             "matmul_peak": {"tflops": 790.0, "method": "8192^3 bf16"}, "pipelines": pipes, "summary": summary,
             "peak_vram_n4": {"vhs": 4000.0, "mllm_clip": 4700.0, "change": 4000 / 4700 - 1}}
    md = "\n".join(timing_lines(stage))
    assert "| vhs | 10.00 | 100.0 | 211 | 26.7% | 45 | 100 | 155 |" in md
    assert "vhs: N=256 not run: out of memory" in md and "Measured matmul peak: 790 TFLOP/s" in md
    assert "VHS 4,000 MB vs MLLM w/ CLIP 4,700 MB (-14.9%" in md
