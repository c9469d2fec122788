"""Cost of Best-of-N with VHS vs the MLLM w/ CLIP and MLLM w/ AE baselines: parameters, FLOPs, time, memory, N per budget.

    python bench/benchmark.py                       # tiny checkpoints on this machine: wall time, cost models, budgets
    python bench/benchmark.py --real                # + real sizes (SANA-Sprint 1.6B / 0.6B at 1024 px, Qwen2.5-0.5B,
                                                    #   CLIP ViT-L/14@336): FLOPs and weights counted on the meta device
    python bench/benchmark.py --timing              # + time real sizes (random weights) on --device: a GPU's job
    python bench/benchmark.py --timing --models small --device cpu   # the same timing path at toy size, anywhere
    bash bench/gpu_run.sh                           # a whole GPU session in one call (see that file)

FLOPs are counted with torch's FlopCounterMode through the same code the nodes run (SanaSprint.prefix/suffix/decode,
VHSVerifier.score_features); on the meta device nothing is allocated, so real sizes count on any CPU. Timing works
on any device; --compile, --weight-storage and --deadline apply to it. Results go to --out (results.json,
results.md, candidates_vs_time.png, bench.log) after every measurement; --append adds this run's timing stage to the
results already there (one GPU session, several stages). Every figure says its device, dtype and how it was measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script: the library and bench/ are imported from the checkout
    sys.path.insert(0, ROOT)

from apps.cli import positive_int  # noqa: E402
from apps.fixtures import TINY_LAYER, TINY_RESOLUTION, build_tiny_bundle  # noqa: E402
from bench.flops import PROMPT, flops_report, real_size_counts  # noqa: E402
from bench.report import PAPER, write_outputs  # noqa: E402
from bench.sizes import PRESETS, REAL, BenchModels, build  # noqa: E402
from bench.timing import Deadline, compile_models, matmul_peak, time_all, timing_summary  # noqa: E402
from models import SanaSprint, VHSVerifier  # noqa: E402
from models.budget import CostModel, best_of_1_ms, measure_costs  # noqa: E402
from models.precision import DTYPES, STORAGE_DTYPES, store_weights_in  # noqa: E402
from models.sana_sprint import MAX_CANDIDATES  # noqa: E402

logger = logging.getLogger("vhs.bench")
PAPER_BEST_OF_1_MS = 200.0  # the paper's Best-of-1 row: 550 / 1100 / 1650 ms are 2.75x / 5.5x / 8.25x of it
COUNT_NS = [1, 2, 4, 8, 9, 15, 48, 150]


def positive_ints(text: str, most: int | None = None, what: str = "values") -> list[int]:
    """'1,16,48' -> [1, 16, 48] (sorted, unique, each >= 1 and <= most; an argparse type)."""
    try:
        ns = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    bad = [n for n in ns if n < 1 or (most is not None and n > most)]
    if bad or not ns:
        raise argparse.ArgumentTypeError(f"{what} must lie in 1..{most or 'any'}, got {bad or text!r}")
    return ns


def candidate_counts(text: str) -> list[int]:
    """Candidate counts: 1..MAX_CANDIDATES, what one Best-of-N run can take."""
    return positive_ints(text, MAX_CANDIDATES, "candidate counts")


def budgets_ms(text: str) -> list[int]:
    return positive_ints(text, 10**6, "budgets (milliseconds)")


def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def budget_table(costs: dict[str, CostModel], budgets: list[float]) -> list[dict]:
    """Largest N per pipeline that fits each budget, with the predicted run time."""
    return [{"budget_ms": round(b, 1), **{f"n_{p}": c.max_candidates(b) for p, c in costs.items()},
             **{f"predicted_ms_{p}": round(c.total_ms(max(c.max_candidates(b), 1)), 1) for p, c in costs.items()}}
            for b in budgets]


def timing_stage(args, device: torch.device, result: dict, save) -> None:
    """Build the --models at real/toy size on the device, apply --weight-storage / --compile, and time every
    pipeline; the stage is stored under result["timings"] and saved after each measurement."""
    preset = PRESETS[args.models]
    names = args.sana or list(preset.sana)[:1]
    dtype = DTYPES[args.dtype]
    deadline = Deadline(args.deadline)
    peak = matmul_peak(device, dtype)
    logger.info("matmul peak on %s: %.1f TFLOP/s (%s)", device, peak["tflops"], peak["method"])
    for name in names:
        if name not in preset.sana:
            raise SystemExit(f"--sana {name}: the {args.models} sizes are {sorted(preset.sana)}")
        cache = result.setdefault("flops_cache", {})  # counted once per size, also across --append stages
        if f"{args.models}/{name}" not in cache:
            cache[f"{args.models}/{name}"] = flops_report(build(preset, name, "meta", dtype))["per_candidate"]
        flops = {"per_candidate": cache[f"{args.models}/{name}"]}
        m = build(preset, name, device, dtype)
        for module in (m.model.transformer, m.text_encoder, m.clip, *(v.llm for v in m.verifiers.values())):
            store_weights_in(module, args.weight_storage, dtype)
        if args.compile:
            compile_models(m, args.compile_backend, log_to=args.log_handler)
        key = f"{name}/{args.stage or default_stage(args)}"
        stage = {"sana": name, "stage": key.split("/")[1], "device": machine_name(device), "dtype": args.dtype,
                 "compile": args.compile_backend if args.compile else None, "weight_storage": args.weight_storage,
                 "size": m.size, "layer": m.layer, "text_tokens": m.model.text_tokens(), "repeats": args.repeats,
                 "matmul_peak": peak, "flops_per_candidate": flops["per_candidate"], "pipelines": {}, "summary": {}}
        result.setdefault("timings", {})[key] = stage

        def record(pipeline: str, entry: dict, stage=stage) -> None:
            stage["pipelines"][pipeline] = entry
            ms = {p: e["ms"] for p, e in stage["pipelines"].items()}
            stage["summary"] = timing_summary(ms, stage["flops_per_candidate"], args.budgets, peak["tflops"])
            mem = {p: stage["pipelines"].get(p, {}).get("peak_memory_mb", {}).get(4) for p in ("vhs", "mllm_clip")}
            if None not in mem.values():
                stage["peak_vram_n4"] = {**mem, "change": mem["vhs"] / mem["mllm_clip"] - 1}
            save()

        ns = {"vhs": args.ns, "mllm_clip": args.baseline_ns, "mllm_ae": args.baseline_ns,
              "vhs_reference_style": args.reference_ns}
        time_all(m, ns, args.repeats, deadline, args.compile, record)
        del m
        if device.type == "cuda":
            torch.cuda.empty_cache()


def default_stage(args) -> str:
    parts = [args.dtype] + (["compile"] if args.compile else []) + (
        [args.weight_storage] if args.weight_storage != "default" else [])
    return "-".join(parts)


def tiny_section(args, device: torch.device) -> dict:
    """The tiny checkpoints (as the tests build them) timed on this machine, with cost models and budget tables."""
    dtype_name = "bf16" if device.type == "cuda" else "fp32"
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_tiny_bundle(tmp)
        model = SanaSprint.from_pretrained(paths["sana"], dtype=dtype_name, device=device)
        verifiers = {k: VHSVerifier.from_pretrained(paths[k], dtype=dtype_name, device=device)
                     for k in ("hidden", "clip", "latent")}
        m = BenchModels(model, verifiers, verifiers["clip"].clip.model, model.pipe.text_encoder, TINY_RESOLUTION,
                        TINY_LAYER)
        report = flops_report(m)
        entries = time_all(m, {p: args.tiny_ns for p in ("vhs", "mllm_clip", "mllm_ae", "vhs_reference_style")},
                           args.repeats, Deadline(None), False, lambda p, e: None)
        last = model.num_layers - 1
        costs = {p: measure_costs(model, verifiers[k], PROMPT, layer, TINY_RESOLUTION, TINY_RESOLUTION,
                                  repeats=args.repeats)
                 for p, k, layer in (("vhs", "hidden", TINY_LAYER), ("mllm_clip", "clip", last),
                                     ("mllm_ae", "latent", last))}
        b1 = best_of_1_ms(model, PROMPT, TINY_RESOLUTION, TINY_RESOLUTION, args.repeats)
    scaled = [b1 * b / PAPER_BEST_OF_1_MS for b in PAPER["budgets_ms"]]
    return {"device": str(device), "dtype": dtype_name, "size": TINY_RESOLUTION, "layer": TINY_LAYER,
            "flops_per_candidate": report["per_candidate"],
            "timing": {"ms": {p: e["ms"] for p, e in entries.items()}},
            "cost_models": {p: c.to_dict() for p, c in costs.items()}, "best_of_1_ms": b1,
            "budgets": budget_table(costs, args.budgets), "paper_shaped_budgets": budget_table(costs, scaled)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="count real sizes on the meta device (FLOPs, weights)")
    parser.add_argument("--timing", action="store_true", help="time --models on --device (random weights)")
    parser.add_argument("--models", default="real", choices=sorted(PRESETS), help="sizes --timing builds")
    parser.add_argument("--sana", action="append", help=f"SANA-Sprint variant(s) to time (default: the first of the "
                        f"preset; real: {', '.join(REAL.sana)})")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=sorted(DTYPES),
                        help="compute dtype of --timing (default: bf16 on a GPU, fp32 on a CPU)")
    parser.add_argument("--ns", type=candidate_counts, default=[1, 4, 16, 48, 96, 150, 256],
                        help="VHS candidate counts to time (ascending; large ones are skipped if they would overrun "
                             "--deadline or memory)")
    parser.add_argument("--baseline-ns", type=candidate_counts, default=[1, 2, 4, 8],
                        help="candidate counts of MLLM w/ CLIP and w/ AE")
    parser.add_argument("--reference-ns", type=candidate_counts, default=[1, 2, 4],
                        help="candidate counts of VHS run the authors' way (one by one, generate(), replay)")
    parser.add_argument("--tiny-ns", type=candidate_counts, default=[1, 2, 4, 8], help="candidate counts, tiny models")
    parser.add_argument("--budgets", type=budgets_ms, default=[550, 1100, 1650], metavar="MS,MS,...")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--compile", action="store_true", help="torch.compile with a dynamic batch (timing)")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: tracing only)")
    parser.add_argument("--weight-storage", default="default", choices=list(STORAGE_DTYPES),
                        help="fp8 weight storage for the DiT, Gemma-2, Qwen2 and CLIP (as the loaders' option)")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds this run may take: an N whose predicted time would overrun it is skipped")
    parser.add_argument("--stage", default=None, help="name of this timing stage (default from dtype/compile/storage)")
    parser.add_argument("--skip-tiny", action="store_true", help="no tiny-model section")
    parser.add_argument("--append", action="store_true",
                        help="keep the results already in --out and add this run's (stages of one GPU session)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "latest"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible to this torch")
    args.dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    handler = logging.FileHandler(os.path.join(args.out, "bench.log"), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("vhs", "models"):  # this command's and the library's progress, whatever the root level
        logging.getLogger(name).setLevel(logging.INFO)
    for name in ("", "torch"):  # torch's recompile and graph-break logs land in the same file
        logging.getLogger(name).addHandler(handler)
    args.log_handler = handler
    device = torch.device(args.device)
    existing = os.path.join(args.out, "results.json")
    result: dict = {}
    if args.append and os.path.exists(existing):
        with open(existing, encoding="utf-8") as f:
            result = json.load(f)
    result.update({"machine": machine_name(device), "paper": PAPER})

    def save() -> None:
        write_outputs(result, args.out)

    try:
        if args.real:
            result["real"] = {}
            for name in REAL.sana:
                counts = real_size_counts(build(REAL, name, "meta", torch.bfloat16), COUNT_NS)
                result["real"][name] = counts
                pc = counts["flops"]["per_candidate"]
                logger.info("%s: per candidate VHS %.0f GF, MLLM w/ CLIP %.0f GF (%.1f%%), MLLM w/ AE %.0f GF", name,
                            pc["vhs"] / 1e9, pc["mllm_clip"] / 1e9, 100 * pc["vhs"] / pc["mllm_clip"],
                            pc["mllm_ae"] / 1e9)
            save()
        if args.timing:
            timing_stage(args, device, result, save)
        if not args.skip_tiny:
            result["tiny"] = tiny_section(args, device)
        save()
    except KeyboardInterrupt:
        logger.warning("interrupted: the results measured so far are in %s", args.out)
        save()
        raise
    finally:
        for item in [logging.getLogger(), *logging.root.manager.loggerDict.values()]:
            if isinstance(item, logging.Logger) and handler in item.handlers:
                item.removeHandler(handler)
        handler.close()
    logger.info("wrote %s/{results.json,results.md,candidates_vs_time.png,bench.log}", args.out)
    return result


if __name__ == "__main__":
    main()
