"""The ShapeWorld CLIP tower: the miniature of the pretrained vision encoder the "MLLM w/ CLIP" baseline reads.

The paper's baseline reads CLIP ViT-L/14@336, a tower pretrained on far more than any verifier sees. Its miniature
must be as strong in this world: a CLIPVisionModel pretrained, before any verifier exists, on scenes of every prompt
the grammar can produce, half of them crisp and half after the generator's DC-AE round trip (the pictures the
baseline will actually read), to say what is where:

- per grid cell (from the patch tokens over it, at the layer verifiers read): empty, or which colour and shape;
- per picture (from the pooled token): which colour-shape pairs appear, and how many of each shape.

So its patch features carry shape, colour, count and position - what a verifier needs. It is frozen afterwards, as
LLaVA-style verifiers keep their tower; only the connector and the LLM fine-tune, as for VHS.
"""

from __future__ import annotations

import logging
import random

import numpy as np
import torch
import torch.nn.functional as F

from models.io import atomic_dir

from .world import COLORS, GRID, LATENT_CHANNELS, SHAPES, SIZE, layout_from_noise, render, world_prompts

logger = logging.getLogger(__name__)
PAIRS = [(c, s) for c in COLORS for s in SHAPES]
MAX_COUNT = 5  # count classes 0..4+


def _cell_labels(objs) -> torch.Tensor:
    """[GRID*GRID] class per cell: 0 empty, 1 + index of its (colour, shape) pair."""
    labels = torch.zeros(GRID * GRID, dtype=torch.long)
    step = SIZE / GRID
    for o in objs:
        cell = int(o.cy // step) * GRID + int(o.cx // step)
        labels[cell] = 1 + PAIRS.index((o.color, o.shape))
    return labels


def pretrain_clip_tower(path: str, steps: int, batch: int, seed: int, vae=None, lr: float = 2e-3) -> str:
    """Pretrain the tower (see the module docstring) and save it as a transformers CLIPVisionModel folder with its
    image processor. `vae`: the generator's autoencoder, for the round-trip half of each batch (None: crisp only)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    rng = random.Random(seed)
    prompts = world_prompts()
    config = CLIPVisionConfig(hidden_size=96, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                              image_size=SIZE, patch_size=8, projection_dim=96)
    tower = CLIPVisionModel(config)
    patches = SIZE // config.patch_size
    per_cell = patches // GRID  # patch tokens per cell side
    cell_head = torch.nn.Linear(config.hidden_size, 1 + len(PAIRS))
    scene_head = torch.nn.Linear(config.hidden_size, len(PAIRS) + MAX_COUNT * len(SHAPES))
    params = list(tower.parameters()) + list(cell_head.parameters()) + list(scene_head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    mean = std = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)
    for step in range(steps):
        chosen = [rng.choice(prompts) for _ in range(batch)]
        layouts = [layout_from_noise(p, torch.randn(LATENT_CHANNELS, SIZE // 8, SIZE // 8)) for p in chosen]
        x = torch.from_numpy(np.stack([render(objs) for objs in layouts])).permute(0, 3, 1, 2).float() / 255
        if vae is not None:  # the second half of the batch as the generator's autoencoder returns it
            half = batch // 2
            with torch.no_grad():
                rec = vae.decode(vae.encode(x[half:] * 2 - 1).latent).sample
            x = torch.cat([x[:half], ((rec.clamp(-1, 1) + 1) * 127.5).round() / 255])
        out = tower((x - mean) / std, output_hidden_states=True)
        # the cells are read from the layer the verifiers read (select_layer -2, LLaVA's choice), patch tokens only
        tokens = out.hidden_states[-2][:, 1:].reshape(batch, patches, patches, -1)
        cells = tokens.reshape(batch, GRID, per_cell, GRID, per_cell, -1).mean(dim=(2, 4)).reshape(batch, GRID * GRID, -1)
        cell_target = torch.stack([_cell_labels(objs) for objs in layouts])
        present = torch.tensor([[float(any((o.color, o.shape) == pair for o in objs)) for pair in PAIRS]
                                for objs in layouts])
        counts = torch.tensor([[min(MAX_COUNT - 1, sum(o.shape == s for o in objs)) for s in SHAPES]
                               for objs in layouts])
        scene = scene_head(out.pooler_output)
        loss = (F.cross_entropy(cell_head(cells).flatten(0, 1), cell_target.flatten())
                + F.binary_cross_entropy_with_logits(scene[:, :len(PAIRS)], present)
                + F.cross_entropy(scene[:, len(PAIRS):].reshape(-1, MAX_COUNT), counts.flatten()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            with torch.no_grad():
                cell_acc = float((cell_head(cells).argmax(-1) == cell_target).float().mean())
            logger.info("clip tower step %d/%d loss %.4f, cells read right %.3f", step, steps, loss.item(), cell_acc)
    processor = CLIPImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE},
                                   image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    with atomic_dir(path, overwrite=True) as tmp:
        tower.eval().save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
    return path
