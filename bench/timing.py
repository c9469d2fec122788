"""Wall time of whole Best-of-N runs, per pipeline and N, on any device (CPU, CUDA, MPS).

Every run is timed under inference_mode, as ComfyUI runs nodes. A pipeline is warmed up first (with torch.compile: at
N=1 and N=2, which compiles the size-1 graph and the dynamic-batch one); the timed runs then forbid recompiles, so a
shape the warm-up missed is an error in the results, never a silent fall-back to eager. Each N is skipped, with the
reason, when its predicted time would overrun the deadline, or when it does not fit in memory. `record` is called
after every measurement, so whatever stops the process (a time limit, an out-of-memory) leaves the figures so far.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Callable

import torch

from bench.flops import PROMPT, USES, pipeline_weight_bytes
from bench.sizes import BenchModels
from models import InputError

logger = logging.getLogger("vhs.bench")

RUNS = ("vhs", "mllm_clip", "mllm_ae", "vhs_reference_style")


def runners(m: BenchModels, prompt: str = PROMPT) -> dict[str, Callable[[int], None]]:
    """One whole Best-of-N run per pipeline, as a function of N (prompt encoded, candidates scored, winner decoded)."""
    model, v, layer, size = m.model, m.verifiers, m.layer, m.size
    last = model.num_layers - 1

    def vhs(n: int) -> None:
        emb = model.encode_prompt(prompt)
        h = model.prefix(emb, list(range(n)), layer=layer, height=size, width=size)
        s = v["hidden"].score(model, h)
        model.decode(model.suffix(h.select([s.ranking()[0]])))

    def baseline(kind: str) -> Callable[[int], None]:
        def run(n: int) -> None:
            emb = model.encode_prompt(prompt)
            h = model.prefix(emb, list(range(n)), layer=last, height=size, width=size)
            s = v[kind].score(model, h)
            if kind == "latent":  # the CLIP path has the winner's pixels already; the AE path decodes it now
                model.decode(model.suffix(h.select([s.ranking()[0]])))
        return run

    def vhs_reference_style(n: int) -> None:
        """VHS as the authors' CLI runs it: candidates one at a time, a 3-beam generate() per score, and the winner
        replayed from noise through the whole DiT (the prompt is still encoded once, to compare like with like)."""
        emb = model.encode_prompt(prompt)
        scores = []
        for seed in range(n):
            h = model.prefix(emb, [seed], layer=layer, height=size, width=size)
            scores.append(float(v["hidden"].score_with_generate(prompt, v["hidden"].features(model, h)).scores[0]))
        best = max(range(n), key=scores.__getitem__)
        model.decode(model.suffix(model.prefix(emb, [best], layer=last, height=size, width=size)))

    return {"vhs": vhs, "mllm_clip": baseline("clip"), "mllm_ae": baseline("latent"),
            "vhs_reference_style": vhs_reference_style}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass
class Deadline:
    """The time left to this process (seconds since start; None: no limit)."""

    seconds: float | None
    start: float = 0.0

    def __post_init__(self) -> None:
        self.start = time.monotonic()

    def left(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - (time.monotonic() - self.start)


def matmul_peak(device: torch.device, dtype: torch.dtype, side: int | None = None, timed: int = 10) -> dict:
    """Dense matmul throughput measured here: side^3 products on random data (8192 on a GPU, 1024 on a CPU), the mean
    of `timed` products after 3 warm-ups. The share of peak the benchmark reports divides by this, not by a
    datasheet figure (an H100 SXM's 989 TFLOP/s datasheet bf16 peak measures at about 790 here)."""
    side = side or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(side, side, device=device, dtype=dtype)
    b = torch.randn(side, side, device=device, dtype=dtype)
    with torch.inference_mode():
        for _ in range(3):
            a @ b
        sync(device)
        t0 = time.perf_counter()
        for _ in range(timed):
            a @ b
        sync(device)
        seconds = (time.perf_counter() - t0) / timed
    del a, b
    return {"tflops": 2 * side**3 / seconds / 1e12,
            "method": f"{side}x{side}x{side} {str(dtype).replace('torch.', '')} matmul on random data, mean of {timed} "
                      f"after 3 warm-ups"}


def compile_models(m: BenchModels, backend: str = "inductor", log_to: logging.Handler | None = None) -> None:
    """torch.compile the DiT blocks, the DC-AE decoder, every verifier's LLM layers and connector and the CLIP tower,
    with dynamic shapes (one graph serves every N >= 2; N = 1 is specialised), recompiles and graph breaks logged
    (also to `log_to`), and hitting the recompile limit an error instead of a silent fall-back to eager."""
    import torch._dynamo

    torch._dynamo.reset()  # graphs of another model size must not count against this one's recompile limit
    config = torch._dynamo.config
    for flag in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit"):  # the name changed across torch versions
        if hasattr(config, flag):
            setattr(config, flag, True)
    torch._logging.set_logs(recompiles=True, graph_breaks=True)
    if log_to is not None:  # set_logs gives torch's loggers handlers of their own (and stops them propagating)
        for name, item in list(logging.root.manager.loggerDict.items()):
            if name.split(".")[0] == "torch" and isinstance(item, logging.Logger) and item.handlers:
                item.addHandler(log_to)
    kwargs = {"dynamic": True, "backend": backend}
    m.model.compile(**kwargs)
    for v in m.verifiers.values():
        v.compile(**kwargs)


def compiled_graphs() -> int:
    """Graphs torch.compile has made in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def no_recompiles(compiled: bool):
    """During timed runs of compiled models: a recompile raises (the timing would otherwise include it)."""
    if compiled and hasattr(torch.compiler, "set_stance"):
        return torch.compiler.set_stance("fail_on_recompile")
    return contextlib.nullcontext()


def measure(fn: Callable[[int], None], n: int, repeats: int, device: torch.device) -> tuple[float, int | None]:
    """(best ms of `repeats` runs, bytes allocated at the peak above what was allocated before; None off CUDA)."""
    best = float("inf")
    base = None
    if device.type == "cuda":
        sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            fn(n)
        sync(device)
        best = min(best, (time.perf_counter() - t0) * 1e3)
    peak = None if base is None else torch.cuda.max_memory_allocated(device) - base
    return best, peak


def _out_of_memory(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e))


def time_pipeline(name: str, fn: Callable[[int], None], ns: list[int], repeats: int, device: torch.device,
                  deadline: Deadline, compiled: bool, weight_bytes: int,
                  record: Callable[[dict], None]) -> dict:
    """Warm up, then time `fn` at each N (ascending), calling record(entry) after each step. The entry holds ms and
    peak MB (this pipeline's weights + its activation peak) per N, why any N was skipped, and any error."""
    entry: dict = {"ms": {}, "peak_memory_mb": {}, "skipped": {}, "error": None, "warmup_s": None, "graphs": None}
    graphs = compiled_graphs() if compiled else 0
    t0 = time.monotonic()
    try:
        with torch.inference_mode():
            for n in ((1, 2) if compiled else (1,)):
                fn(n)
        sync(device)
    except Exception as e:  # noqa: BLE001 - a failed warm-up is a result to record; the other pipelines still run
        logger.exception("%s: warm-up failed", name)
        entry["error"] = f"warm-up failed: {type(e).__name__}: {e}"
        record(entry)
        return entry
    entry["warmup_s"] = time.monotonic() - t0
    entry["graphs"] = compiled_graphs() - graphs if compiled else None
    logger.info("%s: warmed up in %.1f s%s", name, entry["warmup_s"],
                f" ({entry['graphs']} graphs compiled)" if compiled else "")
    record(entry)
    last: tuple[int, float] | None = None
    for i, n in enumerate(sorted(ns)):
        predicted = (last[1] * n / last[0] if last else 0.0) * repeats / 1e3
        if predicted > deadline.left():
            for rest in sorted(ns)[i:]:
                entry["skipped"][rest] = f"time budget (predicted {predicted:.0f} s, {max(deadline.left(), 0):.0f} s left)"
            break
        try:
            with no_recompiles(compiled):
                ms, peak = measure(fn, n, repeats, device)
        except InputError as e:  # the library's own memory check refused it before running
            entry["skipped"].update({rest: str(e) for rest in sorted(ns)[i:]})
            break
        except Exception as e:  # noqa: BLE001
            if _out_of_memory(e):
                entry["skipped"].update({rest: "out of memory" for rest in sorted(ns)[i:]})
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            else:
                logger.exception("%s: N=%d failed", name, n)
                entry["error"] = f"N={n}: {type(e).__name__}: {e}"
            break
        entry["ms"][n] = ms
        entry["peak_memory_mb"][n] = None if peak is None else (weight_bytes + peak) / 2**20
        last = (n, ms)
        logger.info("%s: N=%d %.1f ms%s", name, n, ms,
                    f", peak {entry['peak_memory_mb'][n]:,.0f} MB" if peak is not None else "")
        record(entry)
    return entry


def time_all(m: BenchModels, ns: dict[str, list[int]], repeats: int, deadline: Deadline, compiled: bool,
             record: Callable[[str, dict], None]) -> dict[str, dict]:
    """Time every pipeline in RUNS that has Ns to run, in turn; record(pipeline, entry) after each measurement."""
    fns = runners(m)
    weights = pipeline_weight_bytes(m)
    out = {}
    for name in RUNS:
        if not ns.get(name):
            continue
        if deadline.left() <= 0:
            out[name] = {"ms": {}, "peak_memory_mb": {}, "skipped": {n: "time budget" for n in ns[name]},
                         "error": None, "warmup_s": None, "graphs": None}
            record(name, out[name])
            continue
        out[name] = time_pipeline(name, fns[name], ns[name], repeats, m.model.device, deadline, compiled,
                                  weights[name], lambda entry, name=name: record(name, entry))
    return out


def timing_summary(ms_by_n: dict, flops_per_candidate: dict, budgets: list[float], peak_tflops: float | None) -> dict:
    """From whole-run times at several N: the per-candidate slope and fixed part (least squares), the largest N that
    fits each budget, and the TFLOP/s reached on the candidate path (slope vs counted FLOPs) as a share of peak."""
    out = {}
    for p, ms in ms_by_n.items():
        if p not in flops_per_candidate or len(ms) < 2:
            continue
        ns = [int(n) for n in ms]
        ts = [float(t) for t in ms.values()]
        mean_n, mean_t = sum(ns) / len(ns), sum(ts) / len(ts)
        var = sum((n - mean_n) ** 2 for n in ns)
        slope = sum((n - mean_n) * (t - mean_t) for n, t in zip(ns, ts)) / var if var else float("nan")
        fixed = mean_t - slope * mean_n
        tflops = flops_per_candidate[p] / (slope / 1e3) / 1e12 if slope > 0 else float("nan")
        out[p] = {"per_candidate_ms": slope, "fixed_ms": fixed, "achieved_tflops": tflops,
                  "share_of_peak": tflops / peak_tflops if peak_tflops else None, "fitted_ns": ns,
                  "n_for_budget": {int(b): max(0, int((b - fixed) // slope)) if slope > 0 else None for b in budgets}}
    return out


__all__ = ["Deadline", "RUNS", "USES", "compile_models", "matmul_peak", "runners", "time_all", "timing_summary"]
