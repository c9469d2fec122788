"""Best-of-N with VHS from the command line: N candidates to block l*, one batched verifier pass, one winner decoded.

With no model paths it runs on the embedded default, the trained ShapeWorld miniature in embedded/ (64 px
coloured shapes; an exact judge says which candidates are right), so it works on a fresh CPU-only machine; pass
--sana / --verifier to use real SANA-Sprint and VHS folders. Writes the winner, a contact sheet of every
candidate with its score (and the judge's verdict on ShapeWorld), and a JSON summary. On ShapeWorld it then repeats
Best-of-N on --check more seed sets of the same prompt and says how often the winner was right against a random pick
(one draw is an anecdote; the rate is what Best-of-N promises).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from models import SanaSprint, VHSError, VHSVerifier, candidate_seeds, select_top_k  # noqa: E402
from apps.cli import non_negative_int  # noqa: E402
from apps.sheets import best_of_n_sheet  # noqa: E402
from models.embedded import demo_settings, embedded_model  # noqa: E402
from models.io import to_uint8  # noqa: E402
from models.precision import STORAGE_DTYPES  # noqa: E402

logger = logging.getLogger("vhs.demo")
DEFAULT_PROMPT = "a photo of a triangle and a circle"  # a held-out ShapeWorld prompt


def shapeworld_verdicts(prompt: str, images: torch.Tensor) -> list[bool] | None:
    """The exact judge's verdict per image when the prompt belongs to ShapeWorld, else None."""
    from apps.shapeworld import find_prompt, judge

    meta = find_prompt(prompt)
    if meta is None:
        return None
    return [judge(to_uint8(img), meta) for img in images]


def seed_set_check(model: SanaSprint, verifier: VHSVerifier, emb, prompt: str, first_seed: int, n: int, sets: int,
                   layer: int, size: int) -> dict | None:
    """Best-of-n on `sets` further seed sets (seeds after the demo's own): how often the VHS winner is right, the
    random pick's rate (the share of right candidates) and how often any candidate is right (the oracle)."""
    from apps.shapeworld import find_prompt

    if sets < 1 or find_prompt(prompt) is None:
        return None
    winner_right = any_right = right = 0
    for r in range(1, sets + 1):
        hidden = model.prefix(emb, candidate_seeds(first_seed + r * n, n), layer=layer, height=size, width=size)
        scores = verifier.score(model, hidden, mode="reference")
        _, indices, _ = select_top_k(hidden, scores, k=1)
        verdicts = shapeworld_verdicts(prompt, model.decode(model.suffix(hidden)))
        winner_right += verdicts[indices[0]]
        any_right += any(verdicts)
        right += sum(verdicts)
    return {"seed_sets": sets, "n": n, "first_seed": first_seed + n, "winner_right": winner_right,
            "winner_rate": winner_right / sets, "random_pick_rate": right / (sets * n), "oracle_rate": any_right / sets}


def to_pil(image: torch.Tensor):
    from PIL import Image

    return Image.fromarray(to_uint8(image))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--n", type=int, default=8, help="number of candidates (Best-of-N)")
    parser.add_argument("--seed", type=int, default=0, help="candidate i uses seed + i")
    parser.add_argument("--layer", type=int, default=None, help="DiT block l* (default: the verifier's own)")
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default 1024, embedded: 64)")
    parser.add_argument("--sana", help="SANA-Sprint diffusers folder (default: the embedded ShapeWorld model)")
    parser.add_argument("--verifier", help="VHS verifier folder in the llava_qwen layout (default: embedded)")
    parser.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"],
                        help="default bf16 on GPU, fp32 on CPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--weight-storage", default="default", choices=list(STORAGE_DTYPES),
                        help="fp8_e4m3fn / fp8_e5m2: keep linear weights in 8 bits, upcast per layer")
    parser.add_argument("--offload-text-encoder", action="store_true",
                        help="keep Gemma-2 on the CPU except while it encodes the prompt")
    parser.add_argument("--check", type=non_negative_int, default=16,
                        help="ShapeWorld only: further seed sets of the same prompt to measure how often the winner "
                             "is right (0: none)")
    parser.add_argument("--out", default=os.path.join(ROOT, "out", "demo"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")

    if bool(args.sana) != bool(args.verifier):
        parser.error("give both --sana and --verifier (a verifier reads one model's hidden states), or neither for "
                     "the embedded demo")
    embedded = not args.sana
    if embedded:
        logger.info("no real weights given: using the embedded ShapeWorld models")
    sana_path = args.sana or embedded_model("sana")
    verifier_path = args.verifier or embedded_model("hidden")
    size = args.size or (demo_settings()["width"] if embedded else 1024)

    model = SanaSprint.from_pretrained(sana_path, dtype=dtype, device=args.device, weight_storage=args.weight_storage,
                                       text_encoder_offload=args.offload_text_encoder)
    verifier = VHSVerifier.from_pretrained(verifier_path, dtype=dtype, device=args.device,
                                           weight_storage=args.weight_storage)
    layer = verifier.spec.layer if args.layer is None else args.layer

    t0 = time.perf_counter()
    emb = model.encode_prompt(args.prompt)
    t1 = time.perf_counter()
    hidden = model.prefix(emb, candidate_seeds(args.seed, args.n), layer=layer, height=size, width=size)
    t2 = time.perf_counter()
    scores = verifier.score(model, hidden, mode="reference")
    t3 = time.perf_counter()
    winner, indices, values = select_top_k(hidden, scores, k=1)
    image = model.decode(model.suffix(winner))
    t4 = time.perf_counter()

    os.makedirs(args.out, exist_ok=True)
    to_pil(image[0]).save(os.path.join(args.out, "winner.png"))
    all_images = model.decode(model.suffix(hidden))  # for the contact sheet only; selection never decodes
    verdicts = shapeworld_verdicts(args.prompt, all_images) if embedded else None
    sheet = best_of_n_sheet(args.prompt, all_images, scores, indices[0], verdicts)
    sheet.save(os.path.join(args.out, "candidates.png"))
    summary = {
        "prompt": args.prompt, "n": args.n, "layer": layer, "size": size, "device": args.device, "dtype": dtype,
        "weight_storage": args.weight_storage, "text_encoder_offload": args.offload_text_encoder,
        "sana": sana_path, "verifier": verifier_path, "seeds": list(hidden.seeds),
        "scores": [round(float(s), 6) for s in scores.scores], "p_yes": [round(float(p), 6) for p in scores.p_yes],
        "winner": indices[0], "winner_seed": winner.seeds[0], "winner_score": values[0],
        "judge": verdicts, "winner_correct": None if verdicts is None else verdicts[indices[0]],
        "ms": {"encode_prompt": 1e3 * (t1 - t0), "prefix_all_candidates": 1e3 * (t2 - t1),
               "verify_all_candidates": 1e3 * (t3 - t2), "finish_and_decode_winner": 1e3 * (t4 - t3),
               "total": 1e3 * (t4 - t0)},
    }
    summary["check"] = seed_set_check(model, verifier, emb, args.prompt, args.seed, args.n, args.check, layer,
                                      size) if embedded else None
    with open(os.path.join(args.out, "result.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    logger.info("Best-of-%d for %r: winner #%d (seed %d, score %+.4f) in %.0f ms", args.n, args.prompt, indices[0],
                winner.seeds[0], values[0], summary["ms"]["total"])
    if verdicts is not None:
        logger.info("judge: %d of %d candidates are right; the winner is %s", sum(verdicts), len(verdicts),
                    "right" if verdicts[indices[0]] else "wrong")
    check = summary["check"]
    if check:
        logger.info("over %d more seed sets of this prompt (seeds %d..%d): the VHS winner was right %d times (%.0f%%); "
                    "a random pick is right %.0f%% of the time, and %.0f%% of the sets hold a right candidate",
                    check["seed_sets"], check["first_seed"], check["first_seed"] + check["seed_sets"] * args.n - 1,
                    check["winner_right"], 100 * check["winner_rate"], 100 * check["random_pick_rate"],
                    100 * check["oracle_rate"])
    logger.info("wrote %s/{winner.png,candidates.png,result.json}", args.out)
    return summary


if __name__ == "__main__":
    try:
        main()
    except VHSError as e:  # bad input or a bad model folder: one clear line, no traceback
        logger.error("demo: %s", e)
        sys.exit(2)
