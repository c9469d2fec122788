"""Train a VHS verifier for your own SANA-Sprint: generate -> label -> align -> finetune -> evaluate.

    python -m apps.training generate --sana SANA_DIR --prompts prompts.jsonl --layers 7 --candidates 20 --out data/
    python -m apps.training label    --data data/ --labels-file labels.jsonl  (or --judge apps.shapeworld:shapeworld_judge)
    python -m apps.training align    --data data/ --llm Qwen2.5-0.5B/ --layer 7 --out runs/align
    python -m apps.training finetune --data data/ --init runs/align/verifier --loss weighted --out runs/ft
    python -m apps.training evaluate --data data/ --verifier runs/ft/verifier --out metrics.json

align and finetune run under `accelerate launch` too (DDP on many GPUs, or `--num_processes 2 --cpu` with gloo):
    accelerate launch --num_processes 8 -m apps.training finetune --data data/ --init runs/align/verifier ...
Each subcommand's --help explains its options.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from models.errors import VHSError

logger = logging.getLogger("vhs.training")


from apps.cli import fraction, image_side, non_negative_int, positive_int


def _common_train(p: argparse.ArgumentParser, lr: float) -> None:
    p.add_argument("--data", required=True, help="dataset folder made by `generate`")
    p.add_argument("--out", required=True, help="run folder: checkpoints/, verifier/, train_summary.json")
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many optimizer steps")
    p.add_argument("--batch-size", type=positive_int, default=4, help="per process")
    p.add_argument("--grad-accum", type=positive_int, default=1, help="gradient accumulation steps")
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--warmup-steps", type=non_negative_int, default=0)
    p.add_argument("--checkpoint-every", type=non_negative_int, default=0, help="save a resumable checkpoint every N steps")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no", help="bf16/fp16 on GPU")
    p.add_argument("--holdout", type=fraction, default=0.2, help="share of prompts kept out for evaluation")
    p.add_argument("--split-seed", type=non_negative_int, default=0)
    p.add_argument("--device", default=None, help="where to load models (default: accelerate's device)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m apps.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="K candidates per prompt -> sharded h_l, latents (and images)",
                       description="Generate K candidates per prompt with SANA-Sprint and store, per candidate, the "
                                   "hidden state of every --layers block, the final latent and optionally the image. "
                                   "A re-run with the same prompts and settings makes only what is missing; other "
                                   "settings or prompts are refused (see --extend).")
    g.add_argument("--sana", required=True, help="SANA-Sprint diffusers folder")
    g.add_argument("--prompts", required=True, help=".txt (one prompt per line) or .jsonl with a \"prompt\" field")
    g.add_argument("--out", required=True)
    g.add_argument("--layers", type=non_negative_int, nargs="+", required=True,
                   help="DiT blocks to store (e.g. 1 5 7 9 19)")
    g.add_argument("--candidates", type=positive_int, default=20, help="K candidates per prompt")
    g.add_argument("--size", type=image_side, default=1024, help="image side in pixels (a multiple of 32)")
    g.add_argument("--steps", type=positive_int, default=1)
    g.add_argument("--seed", type=non_negative_int, default=0)
    g.add_argument("--prompts-per-shard", type=positive_int, default=8,
                   help="how many prompts a shard file holds (only packing: it may change between runs)")
    g.add_argument("--extend", action="store_true",
                   help="add the prompts of --prompts that the dataset does not have yet (by content); without it, "
                        "a re-run must ask for the same prompts and settings")
    g.add_argument("--save-images", action="store_true", help="also store decoded images (pixel judges, CLIP)")
    g.add_argument("--dtype", default="bf16", choices=["fp32", "fp16", "bf16"])
    g.add_argument("--device", default="cuda" if _cuda() else "cpu")

    lab = sub.add_parser("label", help="yes/no labels (and stage-1 captions) for a generated dataset",
                         description="Write labels.jsonl from a judge, and captions.jsonl (the prompts, unless a "
                                     "captions file is given).")
    lab.add_argument("--data", required=True)
    src = lab.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels-file", help="JSONL of {\"id\": candidate id, \"label\": yes/no}")
    src.add_argument("--judge", metavar="MODULE:FUNCTION",
                     help="a judge factory to import, e.g. apps.shapeworld:shapeworld_judge (ShapeWorld's exact judge; "
                          "needs --save-images data)")
    lab.add_argument("--captions-file", help="JSONL of {\"id\", \"caption\"} from a VLM re-captioner")
    lab.add_argument("--replace", action="store_true",
                     help="replace labels (and captions) the dataset already has for the same candidates; without it, "
                          "new ones are added and existing ones kept")

    a = sub.add_parser("align", help="stage 1: train the connector on (h_l, caption)",
                       description="Stage 1: a new connector on a Qwen2 LLM, trained with next-token loss on captions; "
                                   "the LLM stays frozen. Computes the per-position normalisation statistics.")
    _common_train(a, lr=1e-3)
    a.add_argument("--llm", required=True, help="a Qwen2 causal LM folder (Qwen2.5-0.5B in the paper)")
    a.add_argument("--kind", choices=["hidden", "latent", "clip"], default="hidden")
    a.add_argument("--layer", type=non_negative_int, help="DiT block the verifier reads (hidden kind)")
    a.add_argument("--vision-tower", help="CLIP vision tower folder (clip kind)")
    a.add_argument("--token-pool", type=positive_int, default=1)

    f = sub.add_parser("finetune", help="stage 2: connector + LLM on yes/no labels",
                       description="Stage 2: train connector and LLM on the labels at the answer position.")
    _common_train(f, lr=2e-5)
    f.add_argument("--init", required=True, help="the aligned verifier folder (align's OUT/verifier)")
    f.add_argument("--loss", choices=["weighted", "xe", "focal"], default="weighted",
                   help="weighted: class-weighted XE from the label balance (paper); focal; xe: plain")
    f.add_argument("--gamma", type=float, default=2.0, help="focal loss gamma")

    e = sub.add_parser("evaluate", help="accuracy, AUROC, simulated Best-of-N on held-out prompts",
                       description="Score held-out labelled candidates; write accuracy, AUROC and Best-of-N "
                                   "(N in 1, 2, 4, 9, 15) against random pick and the oracle to a JSON file.")
    e.add_argument("--data", required=True)
    e.add_argument("--verifier", required=True)
    e.add_argument("--out", required=True, help="metrics JSON file")
    e.add_argument("--holdout", type=fraction, default=0.2)
    e.add_argument("--split-seed", type=non_negative_int, default=0)
    e.add_argument("--all", action="store_true", help="evaluate every labelled candidate, not just the held-out ones")
    e.add_argument("--device", default="cuda" if _cuda() else "cpu")
    return parser


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _run(args)
    except VHSError as e:
        logger.error("error: %s", e)
        return 2


def _run(args) -> int:
    from tqdm.auto import tqdm

    from models import SanaSprint, VHSVerifier
    from apps.prompts import read_prompts

    from .data import CandidateDataset, generate_dataset
    from .judges import LabelsFileJudge, apply_captioner, apply_judge, prompt_captioner

    if args.command == "generate":
        from accelerate import PartialState

        from .train import use_cpu

        prompts = read_prompts(args.prompts)
        state = PartialState(cpu=use_cpu())  # under accelerate launch: one slice of the shards per process / GPU
        device = args.device if state.num_processes == 1 else state.device
        model = SanaSprint.from_pretrained(args.sana, dtype=args.dtype, device=device)
        with tqdm(total=len(prompts), desc="generate", disable=not state.is_local_main_process) as bar:
            done = generate_dataset(model, prompts, args.out, args.layers, args.candidates, args.size, args.size,
                                    args.steps, args.seed, args.prompts_per_shard, args.save_images, progress=bar.update,
                                    part=state.process_index, parts=state.num_processes, extend=args.extend,
                                    model_path=args.sana)
        logger.info("%d new shards in %s", len(done), args.out)
        return 0
    if args.command == "label":
        data = CandidateDataset(args.data)
        if args.judge:
            judge = load_judge(args.judge)
        else:
            judge = LabelsFileJudge(args.labels_file)
        counts = apply_judge(data, judge, replace=args.replace)
        if args.captions_file:
            apply_captioner(data, LabelsFileCaptions(args.captions_file), replace=args.replace)
        apply_captioner(data, prompt_captioner, fill_only=True)  # the prompt, where no caption came from elsewhere
        logger.info("labels: %d matched, %d added, %d replaced, %d kept as they were%s; %d yes, %d no, %d unlabelled",
                    counts["matched"], counts["added"], counts["replaced"], counts["kept"],
                    " (--replace to overwrite)" if counts["kept"] else "", counts["yes"], counts["no"],
                    counts["unlabelled"])
        return 0
    if args.command in ("align", "finetune"):
        from accelerate import PartialState

        from .train import TrainConfig, train, use_cpu

        device = args.device or PartialState(cpu=use_cpu()).device
        data = CandidateDataset(args.data)
        if args.command == "align":
            if args.kind == "hidden" and args.layer is None:
                raise _usage("align --kind hidden needs --layer")
            mm = _dataset_width(data, args.kind, args.layer)
            verifier = VHSVerifier.from_llm(args.llm, args.kind, mm, layer=args.layer, vision_tower_path=args.vision_tower,
                                            token_pool=args.token_pool, device=device, seed=args.seed)
            if args.kind == "hidden":  # statistics are computed from the training split inside train()
                verifier.spec = _with_normalize(verifier.spec)
        else:
            verifier = VHSVerifier.from_pretrained(args.init, device=device)
        cfg = TrainConfig(stage=args.command, out=args.out, epochs=args.epochs, max_steps=args.max_steps,
                          batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr, warmup_steps=args.warmup_steps,
                          loss=getattr(args, "loss", "weighted"), gamma=getattr(args, "gamma", 2.0),
                          checkpoint_every=args.checkpoint_every, seed=args.seed, mixed_precision=args.mixed_precision,
                          holdout=args.holdout, split_seed=args.split_seed)
        summary = train(verifier, data, cfg)
        logger.info("%s: %d steps, loss %s -> %s", args.command, summary["steps"], summary["loss_first"], summary["loss_last"])
        return 0
    if args.command == "evaluate":
        from .evaluate import evaluate, write_metrics

        data = CandidateDataset(args.data)
        verifier = VHSVerifier.from_pretrained(args.verifier, device=args.device)
        train_ids, test_ids = data.split(args.holdout, args.split_seed)
        result = evaluate(verifier, data, [r["id"] for r in data.rows] if args.all else test_ids)
        write_metrics(result, args.out)
        logger.info("accuracy %.3f, AUROC %s, Best-of-4 %s", result["accuracy"], result["auroc"], result["best_of_n"]["4"])
        return 0
    return 2


def load_judge(spec: str):
    """A judge from 'package.module:factory' (the factory returns the judge), so the training tools need not know
    every judge that exists (ShapeWorld's, GenEval's detector wrapped elsewhere, ...)."""
    import importlib

    from models.errors import InputError

    module, _, name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise InputError(f"--judge {spec!r}: cannot import it ({e}); write MODULE:FUNCTION, e.g. "
                         "apps.shapeworld:shapeworld_judge") from e
    return factory()


class LabelsFileCaptions:
    """Captions produced elsewhere (e.g. a VLM re-captioner): JSONL of {"id", "caption"}."""

    def __init__(self, path: str):
        from models.errors import InputError

        if not os.path.isfile(path):
            raise InputError(f"captions file not found: {path}")
        with open(path, encoding="utf-8") as f:
            self.captions = {o["id"]: o["caption"] for o in (json.loads(line) for line in f if line.strip())}

    def __call__(self, dataset, ids):
        return {cid: self.captions.get(cid, dataset.by_id[cid]["prompt"]) for cid in ids}


def _usage(message: str):
    from models.errors import InputError

    return InputError(message)


def _dataset_width(data, kind: str, layer: int | None) -> int:
    from models.errors import InputError

    first = data.rows[0]["id"]
    if kind == "hidden":
        if layer not in data.layers:
            raise InputError(f"layer {layer} is not in the dataset (stored blocks: {data.layers})")
        return int(data.tensor(first, f"h{layer}").shape[-1])
    if kind == "latent":
        return int(data.tensor(first, "latent").shape[0])
    return 0  # clip: taken from the vision tower


def _with_normalize(spec):
    from dataclasses import replace

    return replace(spec, normalize=True)


if __name__ == "__main__":
    sys.exit(main())
