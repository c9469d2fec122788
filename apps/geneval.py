"""VHS Best-of-N over a prompt set, written in GenEval's folder layout, to reproduce the paper's table.

    python -m apps.geneval --prompts ../shared/geneval/evaluation_metadata.jsonl --out runs/geneval_vhs_bo4 \\
        --sana Sana_Sprint_1.6B_1024px_diffusers --verifier vhs-hidden-verifier --n 4

For every prompt i it writes
    <out>/<i:05d>/metadata.jsonl      the prompt's own metadata line (what GenEval's evaluator reads)
    <out>/<i:05d>/samples/0000.png    the winner (0001.png ... the next best with --keep k)
    <out>/<i:05d>/vhs.json            seeds, scores, the winners and the time per stage
A prompt folder appears whole or not at all, so a re-run skips finished prompts and an interrupted one is redone
(and the temporary folders a killed run leaves are removed); --part/--parts splits the prompts between processes or
machines. <out>/run.json records what made the folder (settings, every prompt's content identity, the models'
fingerprints, the code version): a re-run with other settings or other prompts is refused, never mixed in
(--extend adds prompts appended at the end of the list). Then score the images with GenEval's own
evaluator (it needs mmdet, in an environment of its own): `python evaluation/evaluate_images.py <out> ...`.
Without --sana/--verifier it runs the embedded ShapeWorld models (a smoke test: they do not draw GenEval's objects).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from models.errors import InputError, VHSError
from models.io import atomic_dir, to_uint8
from models.sana_sprint import MAX_CANDIDATES, SanaSprint, candidate_seeds
from models.search import select_top_k
from models.verifier import SCORE_MODES, VHSVerifier

logger = logging.getLogger("vhs.geneval")


@dataclass(frozen=True)
class PromptResult:
    """What Best-of-N did for one prompt."""

    index: int
    winners: list[int]
    scores: list[float]
    ms: float


def prompt_folder(out: str, index: int) -> str:
    return os.path.join(out, f"{index:05d}")


def part_indices(count: int, part: int, parts: int) -> list[int]:
    """The prompt indices of one part out of `parts` (every parts-th prompt, so parts finish at the same pace)."""
    if parts < 1 or not 0 <= part < parts:
        raise InputError(f"--part must be between 0 and --parts - 1 ({parts - 1}), got {part}")
    return list(range(part, count, parts))


class ReferenceNoise:
    """The noise of the authors' CLI (sana_sprint_best_of_n_comple.py), prompt for prompt: one CPU generator per
    candidate, seeded once per run from numpy's default_rng(seed), carried from prompt to prompt (each pipeline call
    draws the initial noise and the scheduler's unused last-step noise); the prompts in the order of a second
    default_rng(seed).permutation, split into contiguous chunks, one per process."""

    def __init__(self, count: int, n: int, seed: int, part: int = 0, parts: int = 1):
        import numpy as np

        if parts < 1 or not 0 <= part < parts:
            raise InputError(f"--part must be between 0 and --parts - 1 ({parts - 1}), got {part}")
        self.seeds = [int(s) for s in np.random.default_rng(seed).integers(0, 2**32 - 1, size=n)]
        order = np.random.default_rng(seed).permutation(count).tolist()
        per, extra = divmod(count, parts)
        start = part * per + min(part, extra)
        self.order = order[start:start + per + (1 if part < extra else 0)]
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]
        self.calls = 0  # pipeline calls so far: the noise of the next one starts after 2 * calls draws

    def skip(self, model: SanaSprint, height: int, width: int) -> None:
        """Advance as one prompt's pipeline call would, without running it (a prompt finished in an earlier run)."""
        model.advance_noise(self.generators, height, width)
        self.calls += 1


def best_of_n_prompt(model: SanaSprint, verifier: VHSVerifier, record: dict, index: int, out: str, n: int, seed: int,
                     keep: int, layer: int, height: int, width: int, mode: str,
                     reference: ReferenceNoise | None = None) -> PromptResult:
    """Best-of-N for one prompt: N candidates to block l*, one batched scoring, only the `keep` best finished and
    decoded; the prompt's folder is written whole or not at all."""
    from PIL import Image

    t0 = time.perf_counter()
    if reference is None:
        seeds = candidate_seeds(seed + index * n, n)  # distinct seeds for every prompt, reproducible one by one
        hidden = model.prefix(record["prompt"], seeds, layer=layer, height=height, width=width)
    else:
        seeds, draw = reference.seeds, 2 * reference.calls
        hidden = model.prefix(record["prompt"], seeds, layer=layer, height=height, width=width,
                              generators=reference.generators)
        reference.calls += 1
    scores = verifier.score(model, hidden, mode=mode)
    winners, indices, values = select_top_k(hidden, scores, k=keep)
    images = model.decode(model.suffix(winners))
    ms = (time.perf_counter() - t0) * 1e3
    with atomic_dir(prompt_folder(out, index), overwrite=True) as tmp:
        with open(os.path.join(tmp, "metadata.jsonl"), "w", encoding="utf-8") as f:
            f.write(json.dumps({"prompt": record["prompt"], **record["metadata"]}) + "\n")
        os.makedirs(os.path.join(tmp, "samples"))
        for rank, image in enumerate(images):
            Image.fromarray(to_uint8(image)).save(os.path.join(tmp, "samples", f"{rank:04d}.png"))
        summary = {"prompt": record["prompt"], "seeds": list(hidden.seeds), "layer": layer, "verifier": verifier.name,
                   **({"noise": f"the authors' generators after {draw} draws"} if reference is not None else {}),
                   "score_mode": mode, "scores": [float(s) for s in scores.scores], "winners": indices,
                   "winner_scores": values, "ms": ms}
        with open(os.path.join(tmp, "vhs.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
    return PromptResult(index=index, winners=indices, scores=values, ms=ms)


RUN_FILE = "run.json"


def run(model: SanaSprint, verifier: VHSVerifier, records: Sequence[dict], out: str, n: int = 4, seed: int = 42,
        keep: int = 1, layer: int | None = None, height: int = 1024, width: int = 1024, mode: str = "reference",
        part: int = 0, parts: int = 1, limit: int | None = None, extend: bool = False,
        models: dict | None = None, noise: str = "seeds") -> dict:
    """Best-of-N for every prompt of this part that has no finished folder yet; returns a summary of the run.

    `models` ({"sana": identity, "verifier": identity}, see apps.runs.model_identity) is recorded with the settings;
    a folder made with other settings, models or prompts is refused. noise="reference" draws each candidate's noise
    as the authors' CLI does, in its prompt order and process split (ReferenceNoise), so that run is reproduced
    prompt for prompt; "seeds" (the default) gives prompt i the seeds seed + i*n ... (any prompt re-made alone)."""
    from apps.runs import check_or_record, prompt_ids
    from models.io import remove_stale_partials

    if not 1 <= n <= MAX_CANDIDATES:
        raise InputError(f"--n must be between 1 and {MAX_CANDIDATES}, got {n}")
    if not 1 <= keep <= n:
        raise InputError(f"--keep must be between 1 and --n ({n}), got {keep}")
    if mode not in SCORE_MODES:
        raise InputError(f"unknown score mode {mode!r}; choose one of {SCORE_MODES}")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    layer = verifier.spec.layer if layer is None else layer
    if layer is None:
        raise InputError("this is not a hidden-state verifier: give --layer, or use a VHS verifier")
    if noise not in ("seeds", "reference"):
        raise InputError(f"unknown noise scheme {noise!r}; choose 'seeds' or 'reference'")
    reference = ReferenceNoise(len(records), n, seed, part, parts) if noise == "reference" else None
    todo = reference.order if reference is not None else part_indices(len(records), part, parts)
    model.check_request([0] * n, layer, height, width)  # before anything is written
    settings = {"n": n, "seed": seed, "keep": keep, "layer": layer, "height": height, "width": width,
                "score_mode": mode, "noise": noise, **(models or {"sana": {"name": model.key, "fingerprint": model.key},
                                                  "verifier": {"name": verifier.name, "fingerprint": verifier.name}})}
    ids = prompt_ids(records)
    listed = check_or_record(out, RUN_FILE, settings, [{"id": i, "prompt": r["prompt"]} for i, r in zip(ids, records)],
                             extend=extend, append_only=True)
    if [p["id"] for p in listed] != ids:  # --extend keeps the folder's prompts: numbering follows its list
        raise InputError(f"{out} was made from a longer prompt list; give the whole list (or a new --out)")
    for name in remove_stale_partials(out):
        logger.info("removed %s, left by a run that was killed", name)
    if limit is not None:
        todo = todo[:limit]
    finished = {i for i in todo if os.path.isfile(os.path.join(prompt_folder(out, i), "vhs.json"))}
    if finished:
        logger.info("%d prompts already finished in %s: skipping them", len(finished), out)
    results = []
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with transformers; progress is a nicety
        def tqdm(items, **_):
            return items
    for i in tqdm(todo, desc=f"Best-of-{n}", unit="prompt"):
        if i in finished:
            if reference is not None:  # its noise was drawn in an earlier run: draw past it
                reference.skip(model, height, width)
            continue
        results.append(best_of_n_prompt(model, verifier, records[i], i, out, n, seed, keep, layer, height, width, mode,
                                        reference))
    ms = [r.ms for r in results]
    return {"out": out, "prompts": len(todo), "generated": len(results), "skipped": len(finished), "n": n,
            "keep": keep, "layer": layer, "size": [height, width], "mean_ms_per_prompt": sum(ms) / len(ms) if ms else None}


def main(argv: list[str] | None = None) -> int:
    from apps.cli import image_side, non_negative_int, positive_int
    from apps.prompts import read_prompts
    from apps.runs import model_identity
    from models.embedded import demo_settings, embedded_model

    parser = argparse.ArgumentParser(prog="python -m apps.geneval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", required=True, help="GenEval's evaluation_metadata.jsonl, any .jsonl with a "
                                                          "\"prompt\" field, or a .txt with one prompt per line")
    parser.add_argument("--out", required=True, help="output folder (GenEval layout)")
    parser.add_argument("--sana", help="SANA-Sprint diffusers folder (default: the embedded ShapeWorld model)")
    parser.add_argument("--verifier", help="VHS verifier folder (default: the embedded ShapeWorld verifier)")
    parser.add_argument("--n", type=positive_int, default=4, help="candidates per prompt (the paper: 4, 9, 15)")
    parser.add_argument("--keep", type=positive_int, default=1, help="images saved per prompt: the k best")
    parser.add_argument("--seed", type=non_negative_int, default=42,
                        help="prompt i uses seeds seed + i*n ... seed + i*n + n-1")
    parser.add_argument("--layer", type=non_negative_int, default=None,
                        help="DiT block l* (default: the verifier's own)")
    parser.add_argument("--size", type=image_side, default=None, help="image side (default 1024; embedded: 64)")
    parser.add_argument("--score-mode", choices=list(SCORE_MODES), default="reference")
    parser.add_argument("--part", type=non_negative_int, default=0, help="this process's part (0-based)")
    parser.add_argument("--parts", type=positive_int, default=1, help="how many parts the prompts are split into")
    parser.add_argument("--limit", type=positive_int, default=None, help="at most this many prompts (of this part)")
    parser.add_argument("--noise", choices=["seeds", "reference"], default="seeds",
                        help="seeds: prompt i uses seeds seed + i*n ... (each prompt reproducible alone); reference: "
                             "the noise, prompt order and --part/--parts split of the authors' CLI, to reproduce their "
                             "run prompt for prompt (same --seed and --n)")
    parser.add_argument("--extend", action="store_true",
                        help="the prompts file has new prompts appended at the end: make them too (the folder's own "
                             "prompts must stay as they are)")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None, help="default bf16 on GPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if bool(args.sana) != bool(args.verifier):
        parser.error("give both --sana and --verifier, or neither for the embedded ShapeWorld models")
    try:
        records = read_prompts(args.prompts)
        dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
        size = args.size or (demo_settings()["width"] if not args.sana else 1024)
        sana_path, verifier_path = args.sana or embedded_model("sana"), args.verifier or embedded_model("hidden")
        model = SanaSprint.from_pretrained(sana_path, dtype=dtype, device=args.device)
        verifier = VHSVerifier.from_pretrained(verifier_path, dtype=dtype, device=args.device)
        summary = run(model, verifier, records, args.out, n=args.n, seed=args.seed, keep=args.keep, layer=args.layer,
                      height=size, width=size, mode=args.score_mode, part=args.part, parts=args.parts,
                      limit=args.limit, extend=args.extend, noise=args.noise,
                      models={"sana": model_identity(sana_path), "verifier": model_identity(verifier_path)})
    except VHSError as e:
        logger.error("geneval: %s", e)
        return 2
    logger.info("%s", json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
