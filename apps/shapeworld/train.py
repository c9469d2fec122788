"""Train the ShapeWorld miniature SANA-Sprint: a DC-AE, then a Gemma-2 text encoder + SANA DiT as a one-step generator.

    python -m apps.shapeworld.train --out out/shapeworld/generator     # about 45 minutes on 2 CPU cores

1. AutoencoderDC (64 px -> 8 x 8 x 8 latent) on teacher renders, with a loss that keeps edges crisp (the judge reads
   shapes from them); its scaling factor makes the latents unit-variance, as SANA's 0.41407 does for the real DC-AE.
2. Text encoder (Gemma2Model) and SanaTransformer2DModel, jointly: for a prompt and Gaussian noise z, the teacher
   renders the scene z selects; the student's ONE TrigFlow step - the exact math of SanaSprintPipeline and of
   models/SanaSprint at 1 step, t = pi/2 - must produce that scene's latent. The result is a SanaSprintPipeline
   folder that the normal loaders, nodes and demo use unchanged.
3. Optionally (--decoder-steps), the AE's decoder alone is fine-tuned for crisp edges; its encoder, and so the latent
   space the DiT learned, stay as they are.

Every run trains on the train + validation prompts only (94): the test and compositional prompts are new to the
generator, as to the verifiers. The shipped embedded/sana_sprint_shapeworld: `--vae-steps 800 --steps 2000`, then
`--init <it> --steps 2000`, then `--init <it> --steps 0 --decoder-steps 2500` (each run is recorded in its
training.json; the first two ran before the AE's edge weighting existed; the third, the decoder fine-tune, drew its
pictures from all 126 GenEval-category prompts - scenes without text, as an AE sees them).
Seeded: the same command gives the same weights on the same machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from apps.cli import non_negative_int, positive_int
from apps.fixtures import tiny_gemma_tokenizer
from models.io import atomic_dir
from models.sana_sprint import DEFAULT_GUIDANCE, DEFAULT_MAX_TIMESTEP, sana_instruction
from .world import LATENT_CHANNELS, SIZE, render_from_noise, split_prompts

logger = logging.getLogger(__name__)
LATENT = SIZE // 8


def _images(prompts: list[dict], z: torch.Tensor) -> torch.Tensor:
    """Teacher renders for (prompt, noise) pairs as [B, 3, H, W] in -1..1."""
    arr = np.stack([render_from_noise(p, zi) for p, zi in zip(prompts, z)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1


def build_vae():
    from diffusers import AutoencoderDC

    return AutoencoderDC(
        in_channels=3, latent_channels=LATENT_CHANNELS, attention_head_dim=16,
        encoder_block_types=("ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(16, 32, 64, 64), decoder_block_out_channels=(16, 32, 64, 64),
        encoder_layers_per_block=(1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
        encoder_qkv_multiscales=((), (), (), (5,)), decoder_qkv_multiscales=((), (), (), (5,)),
        upsample_block_type="interpolate", downsample_block_type="Conv", decoder_norm_types="rms_norm",
        decoder_act_fns="silu", scaling_factor=1.0)


def train_vae(prompts: list[dict], steps: int, batch: int, seed: int, lr: float = 1e-3, vae=None):
    """Reconstruction training on teacher renders; returns the AE with its latent scaling factor set.

    The judge reads shapes from edges, so edges must come back crisp: object pixels weigh 10x the white background
    (about 95% of every image) and pixels on an object's boundary 30x, with L1 + L2 errors; half of each batch is
    decoded from slightly perturbed latents, so that the decoder stays crisp on the imperfect latents a one-step
    generator produces. A small penalty keeps the latents near unit scale.
    With `vae` (a trained AE), only its decoder trains: the latent space, and a DiT trained on it, are kept."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    decoder_only = vae is not None
    vae = vae if decoder_only else build_vae()
    if decoder_only:
        vae.encoder.requires_grad_(False)
    params = [p for p in vae.parameters() if p.requires_grad] if decoder_only else list(vae.parameters())
    opt = torch.optim.AdamW(params, lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=min(0.3, max(0.05, 5 / steps)))
    t0 = time.time()
    vae.train()
    for step in range(steps):
        x = _images([rng.choice(prompts) for _ in range(batch)], torch.randn(batch, LATENT_CHANNELS, LATENT, LATENT))
        with torch.set_grad_enabled(not decoder_only):
            latent = vae.encode(x).latent
        perturbed = torch.rand(batch, 1, 1, 1) < 0.5
        noisy = latent + 0.1 * latent.detach().std() * torch.randn_like(latent) * perturbed
        rec = vae.decode(noisy).sample
        obj = (x < 0.99).any(dim=1, keepdim=True).float()
        edge = (F.max_pool2d(obj, 3, 1, 1) + F.max_pool2d(-obj, 3, 1, 1)).clamp(0, 1)  # dilated minus eroded
        weight = 1 + 9 * obj + 20 * edge
        err = (rec - x).abs() + (rec - x) ** 2
        loss = (weight * err).sum() / (weight.sum() * 3) + (0 if decoder_only else 1e-3 * latent.pow(2).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            logger.info("%s step %d/%d loss %.4f (%.0f s)", "decoder" if decoder_only else "vae", step, steps,
                        loss.item(), time.time() - t0)
    vae.eval().requires_grad_(False)
    if not decoder_only:
        with torch.no_grad():
            x = _images([rng.choice(prompts) for _ in range(256)], torch.randn(256, LATENT_CHANNELS, LATENT, LATENT))
            std = float(vae.encode(x).latent.std())
        vae.register_to_config(scaling_factor=1.0 / std)
    return vae


def build_generator(tokenizer):
    from diffusers import SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    text_encoder = Gemma2Model(Gemma2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    transformer = SanaTransformer2DModel(
        in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, num_attention_heads=4, attention_head_dim=32,
        num_layers=8, num_cross_attention_heads=4, cross_attention_head_dim=32, cross_attention_dim=128,
        caption_channels=64, mlp_ratio=2.5, sample_size=LATENT, patch_size=1, guidance_embeds=True,
        guidance_embeds_scale=0.1, qk_norm="rms_norm_across_heads")
    return text_encoder, transformer


TRAIN_TEXT_TOKENS = 32  # training-time max_sequence_length; see one_step


def one_step(pipe, prompts: list[str], z: torch.Tensor, guidance: float = DEFAULT_GUIDANCE,
             max_timestep: float = DEFAULT_MAX_TIMESTEP, max_sequence_length: int = TRAIN_TEXT_TOKENS) -> torch.Tensor:
    """SanaSprintPipeline's single step, differentiable: noise z [B, C, h, w] -> final latents (before / scaling).

    Training keeps 32 text positions instead of the pipeline's 300: Gemma is causal, so the prompt tokens'
    embeddings do not depend on the padding after them, and the DiT masks padding out (bias -10000, an exact 0
    after softmax in fp32), so the model's output is the same at inference's 300 (tested), for a tenth of the cost.
    """
    sigma = pipe.scheduler.config.sigma_data
    unique = sorted(set(prompts))
    emb, mask = pipe.encode_prompt(unique, device=z.device, complex_human_instruction=sana_instruction(),
                                   max_sequence_length=max_sequence_length)
    index = torch.tensor([unique.index(p) for p in prompts])
    emb, mask = emb[index], mask[index]
    t = torch.full((z.shape[0],), max_timestep)
    s = (torch.sin(t) / (torch.cos(t) + torch.sin(t))).view(-1, 1, 1, 1)
    x_t = z * sigma
    model_input = x_t / sigma * torch.sqrt(s**2 + (1 - s) ** 2)
    g = torch.full((z.shape[0],), guidance) * pipe.transformer.config.guidance_embeds_scale
    raw = pipe.transformer(model_input, encoder_hidden_states=emb, timestep=s.flatten(), guidance=g,
                           encoder_attention_mask=mask, return_dict=False)[0]
    flow = ((1 - 2 * s) * model_input + (1 - 2 * s + 2 * s**2) * raw) / torch.sqrt(s**2 + (1 - s) ** 2) * sigma
    t4 = t.view(-1, 1, 1, 1)
    return (torch.cos(t4) * x_t - torch.sin(t4) * flow) / sigma


def train_generator(pipe, prompts: list[dict], steps: int, batch: int, seed: int, lr: float = 1e-3) -> list[float]:
    """Text encoder + DiT learn the teacher's noise -> scene map in one step (the AE stays frozen)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    vae = pipe.vae.requires_grad_(False)
    params = list(pipe.transformer.parameters()) + list(pipe.text_encoder.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=min(0.3, max(0.05, 5 / steps)))
    history, t0 = [], time.time()
    per_prompt = 8  # a batch is batch // 8 prompts x 8 noises: the text encoder runs on few sequences
    for step in range(steps):
        chosen = [p for p in rng.sample(prompts, max(1, batch // per_prompt)) for _ in range(per_prompt)]
        z = torch.randn(len(chosen), LATENT_CHANNELS, LATENT, LATENT)
        with torch.no_grad():
            target = vae.encode(_images(chosen, z)).latent * vae.config.scaling_factor
        pred = one_step(pipe, [p["prompt"] for p in chosen], z)
        loss = F.mse_loss(pred, target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        history.append(loss.item())
        if step % 100 == 0 or step == steps - 1:
            logger.info("generator step %d/%d loss %.4f (%.0f s)", step, steps, float(np.mean(history[-100:])),
                        time.time() - t0)
    for p in params:
        p.requires_grad_(False)
    return history


def main(argv: list[str] | None = None) -> str:
    from diffusers import SanaSprintPipeline, SCMScheduler

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the SANA-Sprint pipeline (diffusers layout)")
    parser.add_argument("--vae-steps", type=positive_int, default=3000)
    parser.add_argument("--steps", type=non_negative_int, default=4000, help="DiT + text encoder steps (0: none)")
    parser.add_argument("--decoder-steps", type=non_negative_int, default=0,
                        help="then fine-tune only the AE's decoder for crisp edges (the latent space and DiT are kept)")
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--init", help="continue from a trained ShapeWorld pipeline folder (its AE is kept)")
    start.add_argument("--vae", help="use this trained AE folder (from --vae-only) instead of training one")
    start.add_argument("--vae-only", action="store_true", help="train only the AE and write it to --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    # The generator learns the prompts verifiers may see (train + validation): the test and compositional prompts
    # stay new to every model, as GenEval's are to the real SANA-Sprint.
    splits = split_prompts()
    train_prompts = splits.train + splits.validation
    t0 = time.time()
    previous = {}
    if args.init:
        pipe = SanaSprintPipeline.from_pretrained(args.init, local_files_only=True)
        with open(os.path.join(args.init, "training.json"), encoding="utf-8") as f:
            previous = json.load(f)
    elif args.vae_only:
        vae = train_vae(train_prompts, args.vae_steps, args.batch, args.seed)
        with atomic_dir(args.out, overwrite=True) as tmp:
            vae.save_pretrained(tmp, safe_serialization=True)
        logger.info("wrote the AE to %s in %.1f min", args.out, (time.time() - t0) / 60)
        return args.out
    else:
        if args.vae:
            from diffusers import AutoencoderDC

            vae = AutoencoderDC.from_pretrained(args.vae, local_files_only=True)
        else:
            vae = train_vae(train_prompts, args.vae_steps, args.batch, args.seed)
        tokenizer = tiny_gemma_tokenizer(1500)
        text_encoder, transformer = build_generator(tokenizer)
        pipe = SanaSprintPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                                  scheduler=SCMScheduler(num_train_timesteps=1000, prediction_type="trigflow",
                                                         sigma_data=0.5))
    if args.decoder_steps:
        pipe.vae = train_vae(train_prompts, args.decoder_steps, args.batch, args.seed, vae=pipe.vae)
    history = (train_generator(pipe, train_prompts, args.steps, args.batch, args.seed + 1 + len(previous.get("runs", [])))
               if args.steps else [])
    pipe.text_encoder.eval()
    pipe.transformer.eval()
    with atomic_dir(args.out, overwrite=True) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        with open(os.path.join(tmp, "model_index.json"), encoding="utf-8") as f:
            index = json.load(f)
        index["tokenizer"] = ["transformers", "GemmaTokenizerFast"]
        with open(os.path.join(tmp, "model_index.json"), "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2)
        with open(os.path.join(tmp, "training.json"), "w", encoding="utf-8") as f:
            run = {"vae_steps": 0 if args.init else args.vae_steps, "vae": args.vae, "decoder_steps": args.decoder_steps,
                   "prompts": "train+validation", "steps": args.steps, "batch": args.batch,
                   "seed": args.seed, "final_loss": float(np.mean(history[-100:])) if history else None, "minutes": (time.time() - t0) / 60,
                   "threads": torch.get_num_threads()}
            json.dump({"runs": previous.get("runs", [previous] if previous else []) + [run]}, f, indent=2)
    logger.info("wrote %s in %.1f min", args.out, (time.time() - t0) / 60)
    return args.out


if __name__ == "__main__":
    main()
