"""The benchmark's outputs: results.json (everything), results.md (tables that say where each figure comes from) and
candidates_vs_time.png, rewritten whole (atomically) after every measurement, so a stopped run leaves readable files."""

from __future__ import annotations

import io
import json
import logging
import os

from bench.flops import PIPELINES
from models.io import write_atomic, write_text_atomic

logger = logging.getLogger("vhs.bench")

PAPER = {"budgets_ms": [550, 1100, 1650], "vhs_n": [4, 9, 15], "clip_n": [2, 4, 6], "peak_vram_vhs_vs_clip_n4": -0.145,
         "per_candidate_verification_ms": {"mllm_clip": 277, "mllm_ae": 138, "vhs": 102}}
NAMES = {"vhs": "VHS (ours)", "mllm_clip": "MLLM w/ CLIP", "mllm_ae": "MLLM w/ AE",
         "vhs_reference_style": "VHS as the authors' CLI runs it"}


def _fmt(value, spec: str) -> str:
    """A number formatted, or "-" for a missing or meaningless one (None, NaN)."""
    return "-" if value is None or value != value else format(value, spec)


def _ns(table: dict) -> list:
    """N keys in numeric order (ints in memory, strings once read back from JSON)."""
    return sorted(table, key=int)


def _get(table: dict, n):
    return table.get(n, table.get(str(n), table.get(int(n)) if str(n).isdigit() else None))


def counts_lines(name: str, real: dict) -> list[str]:
    """Markdown for the real-size counts of one SANA-Sprint variant."""
    pc = real["flops"]["per_candidate"]
    lines = [f"## {name} at {real['size']} px, l*={real['layer']} (FLOPs on {real['flops_device']}, weights "
             f"{real['dtype']}; the text encoder reads {real['flops']['text_tokens']} tokens)", "",
             "| per candidate | GFLOP | vs MLLM w/ CLIP |", "|---|---|---|"]
    lines += [f"| {p} | {pc[p] / 1e9:,.1f} | {pc[p] / pc['mllm_clip']:.1%} |" for p in PIPELINES]
    lines += ["", "| whole run, N | " + " | ".join(PIPELINES) + " | VHS / CLIP |", "|---|---|---|---|---|"]
    for n in _ns(real["run_tflops_by_n"]):
        row = real["run_tflops_by_n"][n]
        lines.append(f"| {n} | " + " | ".join(f"{row[p]:.1f} TF" for p in PIPELINES) +
                     f" | {row['vhs'] / row['mllm_clip']:.2f} |")
    lines += ["", "| parameters | count | weights MB |", "|---|---|---|"]
    lines += [f"| {k} | {v:,} | {real['weights_mb'][k]:,.0f} |" for k, v in real["params"].items()]
    res = real["resident_weights_mb"]
    lines += ["", "| weights resident on the device, MB | vhs | mllm_clip | VHS / CLIP |", "|---|---|---|---|"]
    for setting in res["vhs"]:
        lines.append(f"| {setting} | {res['vhs'][setting]:,.0f} | {res['mllm_clip'][setting]:,.0f} | "
                     f"{res['vhs'][setting] / res['mllm_clip'][setting]:.1%} |")
    return lines + [""]


def stage_title(stage: dict) -> str:
    compiled = f"torch.compile ({stage['compile']}, dynamic batch)" if stage.get("compile") else "no compile"
    storage = stage.get("weight_storage", "default")
    return (f"{stage['sana']}, {stage['dtype']}, {compiled}, weights stored as "
            f"{stage['dtype'] if storage == 'default' else storage}")


def timing_lines(stage: dict) -> list[str]:
    """Markdown for one timing stage: how it was measured, ms and peak MB per N, why any N is missing, the fit."""
    pipes = stage["pipelines"]
    peak = stage.get("matmul_peak") or {}
    lines = [f"### Timed: {stage_title(stage)}", "",
             f"On {stage['device']}; random weights, {stage['size']} px, l*={stage['layer']}, the text encoder reads "
             f"{stage['text_tokens']} tokens; each figure is the best of {stage['repeats']} whole Best-of-N runs "
             "(prompt encoded, N candidates, scored, winner finished and decoded) after warm-up, under "
             "inference_mode. Peak MB = the weights that pipeline uses + the allocation peak of its run above what "
             "was allocated before (CUDA only).", ""]
    if peak:
        lines += [f"Measured matmul peak: {peak['tflops']:.3g} TFLOP/s ({peak['method']}).", ""]
    all_ns = sorted({int(n) for e in pipes.values() for table in (e["ms"], e["skipped"]) for n in table})
    lines += ["| N | " + " | ".join(f"{p} ms" for p in pipes) + " | " + " | ".join(f"{p} peak MB" for p in pipes)
              + " |", "|---" * (2 * len(pipes) + 1) + "|"]
    for n in all_ns:
        cells = []
        for p in pipes:
            ms = _get(pipes[p]["ms"], n)
            cells.append(f"{ms:.1f}" if ms is not None else ("skipped" if _get(pipes[p]["skipped"], n) else "-"))
        for p in pipes:
            mb = _get(pipes[p]["peak_memory_mb"], n)
            cells.append(f"{mb:,.0f}" if mb is not None else "-")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    notes = []
    for p, e in pipes.items():
        if e.get("warmup_s") is not None:
            graphs = f", {e['graphs']} graphs compiled" if e.get("graphs") is not None else ""
            notes.append(f"- {p}: warm-up {e['warmup_s']:.1f} s{graphs}")
        if e.get("error"):
            notes.append(f"- {p}: ERROR {e['error']}")
        reasons = {}
        for n, why in e["skipped"].items():
            reasons.setdefault(why, []).append(int(n))
        notes += [f"- {p}: N={', '.join(map(str, sorted(ns)))} not run: {why}" for why, ns in reasons.items()]
    lines += [""] + notes
    summary = stage.get("summary") or {}
    if summary:
        budgets = list(next(iter(summary.values()))["n_for_budget"])
        lines += ["", "Fitted over the Ns measured (least squares of whole-run ms on N); TFLOP/s = counted FLOPs per "
                      "candidate / ms per candidate; share = that / the measured matmul peak above.", "",
                  "| pipeline | ms per candidate | fixed ms | TFLOP/s on candidates | share of peak | "
                  + " | ".join(f"N in {b} ms" for b in budgets) + " |", "|---" * (5 + len(budgets)) + "|"]
        for p, r in summary.items():
            slope = r["per_candidate_ms"] if r["per_candidate_ms"] > 0 else None  # noise when N does not cost time
            lines.append(f"| {p} | {_fmt(slope, '.2f')} | {_fmt(r['fixed_ms'] if slope else None, '.1f')} | "
                         f"{_fmt(r['achieved_tflops'], '.3g')} | {_fmt(r.get('share_of_peak'), '.1%')} | "
                         + " | ".join(_fmt(_get(r["n_for_budget"], b), "d") for b in budgets) + " |")
    vram = stage.get("peak_vram_n4")
    if vram:
        lines += ["", f"Peak memory at N=4: VHS {vram['vhs']:,.0f} MB vs MLLM w/ CLIP {vram['mllm_clip']:,.0f} MB "
                      f"({vram['change']:+.1%}; the paper reports {PAPER['peak_vram_vhs_vs_clip_n4']:+.1%})."]
    return lines + [""]


def tiny_lines(tiny: dict) -> list[str]:
    """Markdown for the tiny-model section (CPU timings, the reference-style comparison, cost models and budgets)."""
    ms = tiny["timing"]["ms"]
    lines = [f"## Measured on this machine: tiny models ({tiny['device']}, {tiny['dtype']}, {tiny['size']} px)", "",
             "Tiny models on a CPU are dominated by fixed overhead and scheduling noise (best of the repeats is shown);",
             "the FLOP counts above and real-size GPU timings are the figures to compare pipelines by.", "",
             "| N | " + " | ".join(f"{p} ms" for p in PIPELINES) + " |", "|---|---|---|---|"]
    for n in _ns(ms["vhs"]):
        lines.append(f"| {n} | " + " | ".join(f"{_get(ms[p], n):.1f}" for p in PIPELINES) + " |")
    lines += ["", "Our VHS path (batched prefix, one batched LLM forward, the winner resumed from l*) against VHS run as "
                  "the authors' CLI runs it (one candidate at a time, a 3-beam generate() per score, the winner "
                  "replayed from noise), same models, same run:", "",
              "| N | ours ms | reference-style ms | speed-up |", "|---|---|---|---|"]
    ref = ms["vhs_reference_style"]
    lines += [f"| {n} | {_get(ms['vhs'], n):.1f} | {_get(ref, n):.1f} | {_get(ref, n) / _get(ms['vhs'], n):.2f}x |"
              for n in _ns(ref) if _get(ms["vhs"], n) is not None]
    lines.append("")
    for p, cost in tiny["cost_models"].items():
        lines.append(f"- cost model {p}: encode {cost['encode_ms']:.1f} ms + fixed {cost['fixed_ms']:.1f} ms + "
                     f"{cost['per_candidate_ms']:.2f} ms per candidate + winner {cost['winner_ms']:.1f} ms")
    lines += ["", f"Budgets shaped like the paper's (550 / 1100 / 1650 ms = 2.75 / 5.5 / 8.25 x Best-of-1, which here "
                  f"takes {tiny['best_of_1_ms']:.1f} ms): the largest N that fits (paper on an H100: VHS 4 / 9 / 15, "
                  f"MLLM w/ CLIP 2 / 4 / 6).", "", "| budget ms | VHS N | MLLM w/ CLIP N | MLLM w/ AE N |",
              "|---|---|---|---|"]
    lines += [f"| {r['budget_ms']} | {r['n_vhs']} | {r['n_mllm_clip']} | {r['n_mllm_ae']} |"
              for r in tiny["paper_shaped_budgets"]]
    lines += ["", "Absolute budgets:", "", "| budget ms | VHS N | MLLM w/ CLIP N | MLLM w/ AE N |", "|---|---|---|---|"]
    lines += [f"| {r['budget_ms']} | {r['n_vhs']} | {r['n_mllm_clip']} | {r['n_mllm_ae']} |" for r in tiny["budgets"]]
    return lines + [""]


def markdown(result: dict) -> str:
    lines = ["# Best-of-N cost: VHS vs MLLM baselines", "", f"Machine: {result['machine']}", ""]
    for name, real in result.get("real", {}).items():
        lines += counts_lines(name, real)
    if result.get("timings"):
        lines += ["## Wall time", ""]
        for stage in result["timings"].values():
            lines += timing_lines(stage)
    if result.get("tiny"):
        lines += tiny_lines(result["tiny"])
    return "\n".join(lines) + "\n"


def plot(result: dict) -> bytes | None:
    """PNG of whole-run ms against N, one panel per timing stage (and the tiny models); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib not installed: no plot")
        return None
    panels = [(stage_title(s), s["pipelines"]) for s in result.get("timings", {}).values()]
    if result.get("tiny"):
        tiny = result["tiny"]
        panels.append((f"tiny models, {tiny['device']} {tiny['dtype']}",
                       {p: {"ms": ms} for p, ms in tiny["timing"]["ms"].items()}))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (title, pipes) in zip(axes[0], panels):
        for p, e in pipes.items():
            ns = _ns(e["ms"])
            if ns:
                ax.plot([int(n) for n in ns], [e["ms"][n] for n in ns], marker="o", label=NAMES.get(p, p))
        ax.set_xlabel("candidates N")
        ax.set_ylabel("Best-of-N wall time (ms)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_outputs(result: dict, out: str) -> None:
    """Rewrite results.json, results.md and candidates_vs_time.png in `out` (each atomically)."""
    os.makedirs(out, exist_ok=True)
    write_text_atomic(os.path.join(out, "results.json"), json.dumps(result, indent=2, default=str))
    write_text_atomic(os.path.join(out, "results.md"), markdown(result))
    png = plot(result)
    if png is not None:
        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(png)
        write_atomic(os.path.join(out, "candidates_vs_time.png"), write)
