"""RESULTS.md, results.json and the plots of the ShapeWorld benchmark, from its result dictionary."""

from __future__ import annotations

import json
import os

from models.io import write_text_atomic

NAMES = {"vhs": "VHS", "mllm_clip": "MLLM w/ CLIP", "mllm_ae": "MLLM w/ AE"}
PIPES = tuple(NAMES)


def _ci(value: list | tuple, fmt: str = "+.3f") -> str:
    """'est [low, high]' from (estimate, low, high)."""
    est, low, high = value
    return f"{est:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def _ordered(tags) -> list[str]:
    """Categories in the grammar's order (GenEval's six, then the compositions)."""
    from .world import COMPOSITIONAL_TAGS, TAGS

    order = list(TAGS) + list(COMPOSITIONAL_TAGS)
    return sorted(tags, key=lambda t: order.index(t) if t in order else len(order))


def _n(table: dict, n: int):
    return table.get(n, table.get(str(n)))


def audit_lines(audit: dict) -> list[str]:
    lines = ["## The judge", "",
             f"A fixed rule (apps/shapeworld/judge.py), calibrated only on teacher scenes. On {audit['draws']:,} random "
             f"teacher scenes of the whole grammar ({audit['true_rate']:.0%} of them satisfy their prompt), its verdict "
             "against the known truth:", "",
             "| pictures | agreement | true scenes rejected | false scenes accepted | read as no clean scene |",
             "|---|---|---|---|---|"]
    for name, label in (("crisp", "crisp renders"), ("round_trip", "after this generator's DC-AE round trip")):
        a = audit[name]
        lines.append(f"| {label} | {a['agreement']:.2%} | {a['true_scenes_rejected']:.2%} | "
                     f"{a['false_scenes_accepted']:.2%} | {a['not_clean']:.2%} |")
    conf = audit["round_trip"]["confusion"]
    reads = sorted({r for row in conf.values() for r in row})
    lines += ["", "How each drawn object was read after the round trip (rows: the shape drawn):", "",
              "| drawn | " + " | ".join(reads) + " |", "|---" * (len(reads) + 1) + "|"]
    for shape, row in conf.items():
        total = sum(row.values()) or 1
        lines.append(f"| {shape} | " + " | ".join(f"{row.get(r, 0) / total:.1%}" for r in reads) + " |")
    return lines + [""]


def test_lines(name: str, t: dict, title: str) -> list[str]:
    curves, head = t["curves"], t["headroom"]
    b1 = _n(curves["vhs"], 1)["random"]
    lines = [f"## {title}", "",
             f"{t['prompts']} prompts x {t['seed_sets']} seed sets x {t['k']} candidates = {t['candidates']:,} "
             f"candidates, {t['positive_rate']:.1%} of them right. Best-of-1 accuracy {_ci(t['ci']['best_of_1'], '.3f')}. "
             "Accuracy is GenEval's overall (the mean over categories); Best-of-N is exact (every N-subset of each seed "
             "set's candidates); [95% CI] from a bootstrap clustered by prompt.", "",
             "| N | random (Best-of-1) | " + " | ".join(NAMES[p] for p in PIPES) + " | oracle |",
             "|---" * (len(PIPES) + 3) + "|"]
    for n in (1, 2, 4, 9, 16, 32, 64):
        lines.append(f"| {n} | {b1:.3f} | " + " | ".join(f"{_n(curves[p], n)['verifier']:.3f}" for p in PIPES)
                     + f" | {_n(curves['vhs'], n)['oracle']:.3f} |")
    lines += ["", "Share of the oracle's headroom captured, (accuracy - Best-of-1) / (oracle - Best-of-1):", "",
              "| verifier | Bo4 | Bo9 | Bo16 | Bo64 | Bo9 [95% CI] |", "|---|---|---|---|---|---|"]
    for p in PIPES:
        lines.append(f"| {NAMES[p]} | " + " | ".join(f"{_n(head[p], n):.1%}" if _n(head[p], n) is not None else "-"
                                                     for n in (4, 9, 16, 64))
                     + f" | {_ci(t['ci'][f'{p}@9_headroom'], '.1%')} |")
    lines += ["", "| at equal N | Bo4 | Bo9 | Bo16 |", "|---|---|---|---|"]
    for other in ("mllm_clip", "mllm_ae"):
        lines.append(f"| VHS - {NAMES[other]} | " + " | ".join(_ci(t["ci"][f"vhs-{other}@{n}"]) for n in (4, 9, 16))
                     + " |")
    lines += ["", "Within-prompt AUROC (how well a verifier ranks the candidates of one seed set; 0.5 is chance):", "",
              "| verifier | overall | " + " | ".join(_ordered(t["auroc"]["vhs"]["per_category"])) + " |",
              "|---" * (len(t["auroc"]["vhs"]["per_category"]) + 2) + "|"]
    for p in PIPES:
        a = t["auroc"][p]
        cells = [a["per_category"][tag]["auroc"] for tag in _ordered(a["per_category"])]
        lines.append(f"| {NAMES[p]} | {a['overall']:.3f} | " + " | ".join(
            f"{v:.3f}" if v is not None else "-" for v in cells) + " |")
    lines += ["", "Per category (Best-of-1 -> Best-of-4 / 9 / 16 / 64; oracle at 64):", "",
              "| category | Best-of-1 | " + " | ".join(f"{NAMES[p]} 4 / 9 / 16 / 64" for p in PIPES) + " | oracle 64 |",
              "|---" * (len(PIPES) + 3) + "|"]
    for tag in _ordered(t["per_category"]["vhs"]):
        row = [t["per_category"][p][tag] for p in PIPES]
        lines.append(f"| {tag} | {_n(row[0], 1)['random']:.3f} | " + " | ".join(
            " / ".join(f"{_n(r, n)['verifier']:.2f}" for n in (4, 9, 16, 64)) for r in row)
            + f" | {_n(row[0], 64)['oracle']:.3f} |")
    return lines + [""]


def budget_lines(result: dict) -> list[str]:
    fl = result["flops"]
    lines = ["## Matched budgets", "",
             "The paper's budgets are 550 / 1100 / 1650 ms, 2.75x / 5.5x / 8.25x its ~200 ms Best-of-1. Here each "
             "pipeline gets the largest N (at most 64) whose whole run fits the same multiple of Best-of-1, counted in "
             "FLOPs (primary: FlopCounterMode through the library's own calls, the same on any machine) and in time "
             f"measured on this machine (secondary: {result['machine']}). Test split; accuracy [95% CI].", "",
             "FLOPs per candidate: " + ", ".join(f"{NAMES[p]} {fl['per_candidate'][p] / 1e6:,.1f} MFLOP" for p in PIPES)
             + f"; Best-of-1 {fl['best_of_1'] / 1e6:,.1f} MFLOP (text encoding {fl['stages']['text_encode'] / 1e6:,.1f},"
             f" DiT {(fl['stages']['dit_all_blocks'] + fl['stages']['dit_head_only']) / 1e6:,.1f}, decode "
             f"{fl['stages']['ae_decode'] / 1e6:,.1f}).", "",
             "| paper budget | x Best-of-1 | budget | " + " | ".join(f"{NAMES[p]} N, accuracy" for p in PIPES) + " |",
             "|---" * (len(PIPES) + 3) + "|"]
    for row in result["budgets"]["flops"]:
        lines.append(f"| {row['paper_budget_ms']} ms | {row['multiple']} | {row['budget_gflop'] * 1e3:,.1f} MFLOP | "
                     + " | ".join(f"{row[p]['n']}, {row[p]['accuracy']:.3f} [{row[p]['ci'][0]:.3f}, "
                                  f"{row[p]['ci'][1]:.3f}]" for p in PIPES) + " |")
    lines += ["", f"In measured time (Best-of-1 takes {result['best_of_1_ms']:.1f} ms here):", "",
              "| paper budget | x Best-of-1 | budget | " + " | ".join(f"{NAMES[p]} N, accuracy" for p in PIPES) + " |",
              "|---" * (len(PIPES) + 3) + "|"]
    for row in result["budgets"]["time"]:
        lines.append(f"| {row['paper_budget_ms']} ms | {row['multiple']} | {row['budget_ms']:.0f} ms | "
                     + " | ".join(f"{row[p]['n']}, {row[p]['accuracy']:.3f}" for p in PIPES) + " |")
    lines += ["", "Measured costs: " + "; ".join(
        f"{NAMES[p]} {c['per_candidate_ms']:.2f} ms per candidate + {c['encode_ms'] + c['fixed_ms'] + c['winner_ms']:.1f}"
        " ms fixed" for p, c in result["costs"].items()), ""]
    return lines


def validation_lines(result: dict) -> list[str]:
    val, choice = result["validation"], result["choice"]
    best = {name: max(v.values(), key=lambda x: x["objective"]) for name, v in val.items()}
    lines = ["## Validation: every choice, and the ablations", "",
             f"Objective: mean GenEval-overall Best-of-N accuracy at N = 4, 9, 16 on the validation split "
             f"({result['splits']['validation']['prompts']} prompts, {result['splits']['validation']['candidates']:,} "
             "candidates); each configuration at its best checkpoint. Every kind had 12 configurations, the same "
             f"training data ({result['splits']['train']['candidates']:,} candidates of "
             f"{result['splits']['train']['prompts']} prompts), stages and steps.", "",
             "| chosen | configuration | checkpoint | validation objective |", "|---|---|---|---|"]
    for p, c in choice.items():
        lines.append(f"| {NAMES[p]} | {c['config']['name']} | step {c['step']} | {c['validation_objective']:.3f} |")
    if result.get("long_runs"):
        grid_choice, long = result["grid_choice"], result["splits"]["train_long"]
        lines += ["", (f"Longer training: each kind's configuration chosen on the grid trained again from the same "
                       f"stage-1 alignment, on {long['candidates']:,} candidates ({long['positive_rate']:.1%} right; new "
                       f"seed sets of the same {long['prompts']} training prompts) for {long['steps']:,} steps, 8 "
                       "checkpoints, the same for every kind. The final choice above is the best checkpoint of the grid "
                       "and this run:"), "",
                  "| verifier | grid: objective (AUROC) | longer training: objective (AUROC) at each checkpoint |",
                  "|---|---|---|"]
        for c in result["long_runs"]:
            pipe = c["pipeline"]
            g = val[grid_choice[pipe]["config"]["name"]][str(grid_choice[pipe]["step"])]
            steps = sorted(val[c["name"]], key=int)
            lines.append(f"| {NAMES[pipe]} | {g['objective']:.3f} ({g['auroc']:.3f}) | " + ", ".join(
                f"{int(k):,}: {val[c['name']][k]['objective']:.3f} ({val[c['name']][k]['auroc']:.3f})" for k in steps)
                + " |")
    lines += ["", "Block ablation (VHS, weighted XE; the best learning rate and checkpoint per block):", "",
              "| block l* | objective | within-prompt AUROC |", "|---|---|---|"]
    for layer in sorted({c["layer"] for c in result["grid"] if c["pipeline"] == "vhs"}):
        runs = [best[c["name"]] for c in result["grid"] if c.get("layer") == layer]
        top = max(runs, key=lambda x: x["objective"])
        lines.append(f"| {layer} | {top['objective']:.3f} | {top['auroc']:.3f} |")
    vhs_grid = result.get("grid_choice", choice)["vhs"]["config"]["name"]
    lines += ["", f"Loss ablation (VHS at {vhs_grid}, best checkpoint):", "",
              "| loss | objective | within-prompt AUROC |", "|---|---|---|"]
    for loss, runs in result["loss_ablation"].items():
        top = max(runs.values(), key=lambda x: x["objective"])
        lines.append(f"| {loss} | {top['objective']:.3f} | {top['auroc']:.3f} |")
    lines += ["", "Every configuration (best checkpoint):", "", "| configuration | objective | AUROC |", "|---|---|---|"]
    lines += [f"| {name} | {b['objective']:.3f} | {b['auroc']:.3f} |" for name, b in best.items()]
    return lines + [""]


def timing_sentence(timings: dict | None) -> str:
    """What the results cost, step by step as recorded when each was computed; never a resumed run's own minutes."""
    if not timings:
        return ""
    steps, order = timings["steps"], timings["order"]
    parts = [f"{step}: {steps[step]:.0f} min" if step in steps else f"{step}: not timed" for step in order]
    reused = [step for step in order if step not in timings["computed_now"]]
    return (f"Minutes each step took when it was computed: {'; '.join(parts)} (a step computed before timings were kept "
            f"is 'not timed'). The last invocation took {timings['this_invocation']:.0f} min"
            + (f" and reused the finished steps ({'; '.join(reused)})." if reused else "."))


def markdown(result: dict) -> str:
    tests = result["tests"]
    lines = ["# ShapeWorld: Best-of-N with VHS vs pixel-space verifiers", "",
             "Made by one command, `python -m apps.shapeworld.benchmark --work out/shapeworld --ship embedded`, "
             f"on {result['machine']}. {timing_sentence(result.get('timings'))} Prompts are split train / validation / test "
             "within each GenEval category, plus a compositional test split (a counted colour, a related pair of coloured "
             "shapes); the generator learned the train + validation prompts only, so both test splits are new to every "
             "model. Every choice was made on validation, and the two test splits were generated and scored once, at "
             "the end.", ""]
    lines += audit_lines(result["judge_audit"])
    lines += test_lines("test", tests["test"], "Test split")
    lines += budget_lines(result)
    lines += test_lines("compositional", tests["compositional"], "Compositional test split (prompts never trained on)")
    lines += validation_lines(result)
    lines += ["Plots: accuracy_vs_budget.png (test accuracy against the FLOPs of the whole run), accuracy_vs_n.png."]
    return "\n".join(lines) + "\n"


def plots(result: dict, work: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    from models.flops import run_flops

    t = result["tests"]["test"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ns = list(range(1, 65))
    for p in PIPES:
        x = [run_flops(result["flops"], p, n) / 1e6 for n in ns]
        ax.plot(x, [_n(t["curves"][p], n)["verifier"] for n in ns], marker=".", markersize=3, label=NAMES[p])
    oracle = [_n(t["curves"]["vhs"], n)["oracle"] for n in ns]
    ax.plot([run_flops(result["flops"], "vhs", n) / 1e6 for n in ns], oracle, color="gray", linestyle=":",
            label="oracle (at VHS's cost)")
    ax.axhline(_n(t["curves"]["vhs"], 1)["random"], color="gray", linestyle="--", label="Best-of-1 / random pick")
    for row in result["budgets"]["flops"]:
        ax.axvline(row["budget_gflop"] * 1e3, color="lightgray", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs of the whole Best-of-N run (MFLOP, log)")
    ax.set_ylabel("test accuracy (exact judge)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(work, "accuracy_vs_budget.png"), dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (split, title) in zip(axes, (("test", "test split"), ("compositional", "compositional split"))):
        curves = result["tests"][split]["curves"]
        for p in PIPES:
            ax.plot(ns, [_n(curves[p], n)["verifier"] for n in ns], label=NAMES[p])
        ax.plot(ns, [_n(curves["vhs"], n)["oracle"] for n in ns], color="gray", linestyle=":", label="oracle")
        ax.axhline(_n(curves["vhs"], 1)["random"], color="gray", linestyle="--", label="random pick")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("candidates N")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (exact judge)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(work, "accuracy_vs_n.png"), dpi=120)
    plt.close(fig)


def write_report(result: dict, work: str) -> None:
    write_text_atomic(os.path.join(work, "results.json"), json.dumps(result, indent=2, default=str))
    write_text_atomic(os.path.join(work, "RESULTS.md"), markdown(result))
    plots(result, work)
