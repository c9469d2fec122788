"""The paper's two training stages, run under accelerate (one CPU, one GPU, or many with DDP/FSDP).

Stage 1 (align): only the connector trains, with next-token loss on a caption of each candidate
               (LLaVA stage-1 style): "<image> Describe the image briefly." -> caption.
Stage 2 (finetune): connector + LLM train on yes/no labels at the answer position of the VHS question,
               with class-weighted cross-entropy (weights from the label balance), focal loss or plain XE.
Both write the verifier in the official llava_qwen layout, which the "VHS Verifier Loader" node reads unchanged.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import InputError
from models.verifier import VHSVerifier
from models.io import honour_umask, write_text_atomic

from .data import CandidateDataset, position_stats

logger = logging.getLogger(__name__)
ALIGN_QUESTION = "<image>\nDescribe the image briefly."
LossKind = Literal["weighted", "xe", "focal"]


# ------------------------------------------------------------------ losses
def class_weights(labels: Sequence[bool]) -> tuple[float, float]:
    """(w_yes, w_no) inversely proportional to each class's share: each class contributes half of the loss."""
    n = len(labels)
    yes = sum(bool(x) for x in labels)
    if yes == 0 or yes == n:
        raise InputError(f"the training labels are all {'yes' if yes else 'no'}: a verifier needs both classes")
    return (n - yes) / n, yes / n


def answer_loss(logits: torch.Tensor, targets: torch.Tensor, is_yes: torch.Tensor, kind: LossKind,
                weights: tuple[float, float] = (0.5, 0.5), gamma: float = 2.0) -> torch.Tensor:
    """Loss on the answer token. logits [B, V], targets [B] token ids, is_yes [B] bool.

    weighted: sum_i w_i CE_i / sum_i w_i with w = w_yes or w_no; focal: the same alpha weights times (1 - p_t)^gamma;
    xe: the plain mean cross-entropy.
    """
    ce = F.cross_entropy(logits.float(), targets, reduction="none")
    if kind == "xe":
        return ce.mean()
    w = torch.where(is_yes, torch.tensor(weights[0], device=ce.device), torch.tensor(weights[1], device=ce.device))
    if kind == "focal":
        p_t = torch.exp(-ce)
        ce = ce * (1 - p_t) ** gamma
    elif kind != "weighted":
        raise InputError(f"unknown loss {kind!r}; choose weighted, xe or focal")
    return (w * ce).sum() / w.sum()


# ------------------------------------------------------------------ batches
class TrainingExamples(torch.utils.data.Dataset):
    """Stored candidates with what the verifier reads (its features, through the verifier's own stored_features) and
    the tokens it must produce: the caption (stage 1) or the yes/no answer (stage 2)."""

    def __init__(self, verifier: VHSVerifier, dataset: CandidateDataset, ids: Sequence[str], stage: str,
                 labels: dict[str, bool] | None = None, captions: dict[str, str] | None = None):
        self.v, self.data, self.ids, self.stage = verifier, dataset, list(ids), stage
        self.labels, self.captions = labels or {}, captions or {}
        if verifier.kind == "hidden" and verifier.spec.layer not in dataset.layers:
            raise InputError(f"the dataset stores blocks {dataset.layers}, not block {verifier.spec.layer}")
        if stage == "align":  # the stage-1 question, split around the image exactly as the scoring question is
            self.align_tokens = verifier.tokens_around_image(ALIGN_QUESTION)

    def __len__(self) -> int:
        return len(self.ids)

    def features(self, cid: str) -> torch.Tensor:
        """The verifier's features of one stored candidate [tokens, channels]."""
        return stored_candidate_features(self.v, self.data, [cid])[0]

    def __getitem__(self, i: int) -> dict:
        cid = self.ids[i]
        prompt = self.data.by_id[cid]["prompt"]
        tok = self.v.tokenizer
        if self.stage == "align":
            before, after = self.align_tokens
            target = tok(self.captions.get(cid, prompt) + tok.eos_token, add_special_tokens=False).input_ids
        else:
            before, after = self.v.prompt_token_ids(prompt)
            target = [self.v.yes_id if self.labels[cid] else self.v.no_id]
        return {"before": list(before), "after": list(after), "target": list(target), "features": self.features(cid),
                "is_yes": bool(self.labels.get(cid, False))}


def stored_candidate_features(verifier: VHSVerifier, dataset: CandidateDataset, ids: Sequence[str]) -> torch.Tensor:
    """The verifier's features [N, tokens, channels] of stored candidates (one public path for training, evaluation
    and benchmarks; the same as VHSVerifier.features on live candidates)."""
    if verifier.kind == "hidden":
        layer = verifier.spec.layer
        h = torch.stack([dataset.tensor(cid, f"h{layer}") for cid in ids])
        return verifier.stored_features(hidden=h, grid=dataset.grid(layer))
    if verifier.kind == "latent":
        return verifier.stored_features(latents=torch.stack([dataset.tensor(cid, "latent") for cid in ids]))
    return verifier.stored_features(images=torch.stack([dataset.tensor(cid, "image") for cid in ids]))


def collate(items: list[dict], pad_id: int) -> dict:
    """Right-padded token ids with a -1 placeholder where the visual tokens go, and the positions to predict."""
    seqs, spans, predict_pos, targets = [], [], [], []
    for it in items:
        t = it["features"].shape[0]
        ids = it["before"] + [-1] * t + it["after"] + it["target"][:-1]
        start = len(it["before"])
        first = len(it["before"]) + t + len(it["after"]) - 1  # the position that predicts target[0]
        seqs.append(ids)
        spans.append((start, start + t))
        predict_pos.append([first + j for j in range(len(it["target"]))])
        targets.append(it["target"])
    length = max(len(s) for s in seqs)
    ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(items), length, dtype=torch.long)
    visual = torch.zeros(len(items), length, dtype=torch.bool)
    for i, (s, (a, b)) in enumerate(zip(seqs, spans)):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
        visual[i, a:b] = True
    rows = torch.tensor([i for i, p in enumerate(predict_pos) for _ in p])
    cols = torch.tensor([c for p in predict_pos for c in p])
    return {"ids": ids, "attention_mask": mask, "visual": visual, "features": torch.stack([it["features"] for it in items]),
            "rows": rows, "cols": cols, "targets": torch.tensor([t for ts in targets for t in ts]),
            "is_yes": torch.tensor([it["is_yes"] for it in items])}


class VerifierModule(nn.Module):
    """Connector + LLM as one module (what DDP/FSDP wraps): logits at the requested positions only."""

    def __init__(self, verifier: VHSVerifier):
        super().__init__()
        self.connector, self.llm = verifier.connector, verifier.llm

    def input_embeds(self, ids: torch.Tensor, visual: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Token embeddings with the connector's visual tokens in the image span (what VHSVerifier.build_inputs builds
        for scoring; a test holds the two equal)."""
        x = self.llm.get_input_embeddings()(ids.clamp_min(0))
        vis = self.connector(features.to(x.dtype))
        return x.masked_scatter(visual.unsqueeze(-1), vis.to(x.dtype))

    def forward(self, ids, attention_mask, visual, features, rows, cols) -> torch.Tensor:
        x = self.input_embeds(ids, visual, features)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
        hidden = self.llm.model(inputs_embeds=x, attention_mask=attention_mask, position_ids=position_ids,
                                use_cache=False).last_hidden_state
        return self.llm.lm_head(hidden[rows, cols])


# ------------------------------------------------------------------ the loop
@dataclass
class TrainConfig:
    stage: Literal["align", "finetune"]
    out: str
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    loss: LossKind = "weighted"
    gamma: float = 2.0
    checkpoint_every: int = 0
    seed: int = 0
    mixed_precision: str = "no"  # "no", "bf16" or "fp16" (GPU)
    holdout: float = 0.2
    split_seed: int = 0


def train(verifier: VHSVerifier, dataset: CandidateDataset, cfg: TrainConfig) -> dict:
    """Run one stage with accelerate; resumes from the newest checkpoint in cfg.out; saves cfg.out/verifier."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                              cpu=use_cpu())
    set_seed(cfg.seed)
    # 1. what to train on, and the class weights of the labels
    train_ids, labels, weights = _training_split(dataset, cfg)
    # 2. the verifier made trainable (statistics from the training split first)
    _prepare_verifier(verifier, dataset, train_ids, cfg.stage)
    # 3. data, optimizer and schedule, prepared by accelerate
    examples = TrainingExamples(verifier, dataset, train_ids, cfg.stage, labels, dataset.captions())
    module, optimizer, loader, schedule, total = _prepare_run(accelerator, verifier, examples, cfg)
    # 4. resume, then the loop
    step, start_epoch, skip = _resume(accelerator, os.path.join(cfg.out, "checkpoints"))
    if step:  # the next step's rate follows this run's schedule (a longer run than the checkpoint's has another one)
        inner = getattr(schedule, "scheduler", schedule)
        for group, base, rate in zip(optimizer.param_groups, inner.base_lrs, inner.lr_lambdas):
            group["lr"] = base * rate(step)
    history = _loop(accelerator, module, optimizer, loader, schedule, cfg, weights, step, start_epoch, skip, total)
    # 5. the verifier in the official layout, and a summary
    summary = {"stage": cfg.stage, "steps": step + len(history), "train_candidates": len(train_ids),
               "loss_first": history[:1], "loss_last": history[-1:], "class_weights": {"yes": weights[0], "no": weights[1]},
               "config": asdict(cfg), "processes": accelerator.num_processes}
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        verifier.llm.eval()
        verifier.connector.eval()
        verifier.save_pretrained(os.path.join(cfg.out, "verifier"), overwrite=True)
        write_text_atomic(os.path.join(cfg.out, "train_summary.json"), json.dumps(summary, indent=2))
    accelerator.wait_for_everyone()
    return summary


def _training_split(dataset: CandidateDataset, cfg: TrainConfig) -> tuple[list[str], dict[str, bool], tuple[float, float]]:
    train_ids, _ = dataset.split(cfg.holdout, cfg.split_seed)
    labels = dataset.labels()
    if cfg.stage == "finetune":
        train_ids = [cid for cid in train_ids if cid in labels]
        if not train_ids:
            raise InputError(f"no labelled training candidates in {dataset.folder} (run the label step first)")
        return train_ids, labels, class_weights([labels[cid] for cid in train_ids])
    if not train_ids:
        raise InputError(f"{dataset.folder} has no training candidates")
    return train_ids, labels, (0.5, 0.5)


def _prepare_verifier(verifier: VHSVerifier, dataset: CandidateDataset, train_ids: list[str], stage: str) -> None:
    """Stage 1 trains the connector, stage 2 the connector and the LLM, both in float32 (mixed precision is
    accelerate's); a hidden verifier's normalisation statistics come from the training split."""
    if verifier.kind == "hidden" and verifier.spec.normalize and verifier.hidden_features.mean is None:
        mean, var = position_stats(dataset, verifier.spec.layer, train_ids)
        verifier.hidden_features.mean, verifier.hidden_features.variance = mean, var
    for p in verifier.llm.parameters():
        p.requires_grad_(stage == "finetune")
    for p in verifier.connector.parameters():
        p.requires_grad_(True)
    verifier.connector.float()
    if stage == "finetune":
        verifier.llm.float()


def _prepare_run(accelerator, verifier: VHSVerifier, examples: TrainingExamples, cfg: TrainConfig):
    pad = verifier.tokenizer.pad_token_id if verifier.tokenizer.pad_token_id is not None else 0
    g = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(examples, batch_size=cfg.batch_size, shuffle=True, generator=g,
                                         collate_fn=lambda items: collate(items, pad))
    module = VerifierModule(verifier)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(loader) / max(1, accelerator.num_processes) / cfg.grad_accum)
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps))
                                                 * max(0.0, 1 - s / max(1, total)))
    module, optimizer, loader, schedule = accelerator.prepare(module, optimizer, loader, schedule)
    return module, optimizer, loader, schedule, total


def _resume(accelerator, ckpt_root: str) -> tuple[int, int, int]:
    """(step, epoch, batches already seen in that epoch) of the newest complete checkpoint, or zeros."""
    latest = _latest_checkpoint(ckpt_root)
    if latest is None:
        return 0, 0, 0
    accelerator.load_state(latest)
    with open(os.path.join(latest, "trainer_state.json"), encoding="utf-8") as f:
        state = json.load(f)
    accelerator.print(f"resumed from {latest} at step {state['step']}")
    return state["step"], state["epoch"], state["batches_in_epoch"]


def _loop(accelerator, module, optimizer, loader, schedule, cfg: TrainConfig, weights: tuple[float, float], step: int,
          start_epoch: int, skip: int, total: int) -> list[float]:
    """Optimizer steps from `step` to `total`, checkpointing every cfg.checkpoint_every; returns the step losses."""
    from tqdm.auto import tqdm

    ckpt_root = os.path.join(cfg.out, "checkpoints")
    bar = tqdm(total=total, initial=step, disable=not accelerator.is_local_main_process, desc=cfg.stage)
    history: list[float] = []
    module.train()
    for epoch in range(start_epoch, cfg.epochs if cfg.max_steps is None else 10**9):
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        seen, skip = skip, 0
        for batch in batches:
            with accelerator.accumulate(module):
                logits = module(batch["ids"], batch["attention_mask"], batch["visual"], batch["features"],
                                batch["rows"], batch["cols"])
                if cfg.stage == "align":
                    loss = F.cross_entropy(logits.float(), batch["targets"])
                else:
                    loss = answer_loss(logits, batch["targets"], batch["is_yes"], cfg.loss, weights, cfg.gamma)
                accelerator.backward(loss)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
            seen += 1
            if accelerator.sync_gradients:
                step += 1
                history.append(float(accelerator.gather(loss.detach()[None]).mean()))
                bar.update(1)
                bar.set_postfix(loss=f"{history[-1]:.4f}")
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    _save_checkpoint(accelerator, ckpt_root, step, epoch, seen)
                if step >= total:
                    bar.close()
                    return history
    bar.close()
    return history


def checkpoints(out: str) -> list[str]:
    """The complete checkpoints of a stage's output folder, oldest first."""
    root = os.path.join(out, "checkpoints")
    if not os.path.isdir(root):
        return []
    done = [d for d in os.listdir(root) if d.startswith("step_") and os.path.isfile(os.path.join(root, d, "trainer_state.json"))]
    return [os.path.join(root, d) for d in sorted(done, key=lambda d: int(d.split("_")[1]))]


def load_checkpoint_weights(verifier: VHSVerifier, checkpoint: str) -> int:
    """Put a checkpoint's connector and LLM weights into `verifier` (one trained by the same stage, so that it has the
    same shapes and statistics), to evaluate an intermediate step; returns the step."""
    from safetensors.torch import load_file

    files = [f for f in os.listdir(checkpoint) if f.startswith("model") and f.endswith(".safetensors")]
    if len(files) != 1:
        raise InputError(f"{checkpoint} is not a complete checkpoint (expected one model*.safetensors, found {files})")
    state = load_file(os.path.join(checkpoint, files[0]))
    missing, unexpected = VerifierModule(verifier).load_state_dict(state, strict=False)
    tied = {"llm.lm_head.weight"} if verifier.llm.config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise InputError(f"{checkpoint} does not fit this verifier (missing {sorted(set(missing) - tied)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]})")
    with open(os.path.join(checkpoint, "trainer_state.json"), encoding="utf-8") as f:
        return int(json.load(f)["step"])


def use_cpu() -> bool:
    """Train on the CPU when there is no GPU: under torchrun / accelerate launch this gives gloo DDP (MULTI_CPU)."""
    return not torch.cuda.is_available()


def _latest_checkpoint(root: str) -> str | None:
    if not os.path.isdir(root):
        return None
    done = [d for d in os.listdir(root) if d.startswith("step_") and os.path.isfile(os.path.join(root, d, "trainer_state.json"))]
    return os.path.join(root, max(done, key=lambda d: int(d.split("_")[1]))) if done else None


def _save_checkpoint(accelerator, root: str, step: int, epoch: int, batches_in_epoch: int) -> None:
    path = os.path.join(root, f"step_{step:07d}")
    accelerator.save_state(path)
    if accelerator.is_main_process:  # written last: a checkpoint without it is incomplete and ignored
        honour_umask(path)  # safetensors writes 0600
        write_text_atomic(os.path.join(path, "trainer_state.json"),
                          json.dumps({"step": step, "epoch": epoch, "batches_in_epoch": batches_in_epoch}))
    accelerator.wait_for_everyone()
