"""How exact the judge is: its verdicts against the known truth of teacher scenes, on crisp renders and after the
generator's own DC-AE round trip (which every generated candidate goes through), with the per-shape confusion."""

from __future__ import annotations

import random

import numpy as np
import torch

from .judge import read_scene, satisfies, truth
from .world import LATENT_CHANNELS, SHAPES, SIZE, layout_from_noise, render, world_prompts

MATCH_PX = 4.0  # a found object within this distance of a drawn one is its reading


def round_trip(vae, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """[N, H, W, 3] uint8 pictures through the autoencoder and back, as the pipeline decodes (rounded to uint8)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            rec = vae.decode(vae.encode(x[i:i + batch]).latent).sample
            out.append(((rec.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def judge_audit(vae, draws: int = 2000, seed: int = 0) -> dict:
    """Draw `draws` teacher scenes (random prompts of the whole grammar, random noise), and compare the judge's verdict
    with the truth on the crisp render and on its round trip through `vae`: agreement, true scenes rejected, false
    scenes accepted, and how each drawn object was read (its shape, 'missed', or a wrong colour)."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    prompts = world_prompts()
    metas = [rng.choice(prompts) for _ in range(draws)]
    layouts = [layout_from_noise(m, torch.randn(LATENT_CHANNELS, SIZE // 8, SIZE // 8, generator=gen)) for m in metas]
    crisp = np.stack([render(objs) for objs in layouts])
    trip = round_trip(vae, crisp)
    truths = np.array([truth(objs, m) for objs, m in zip(layouts, metas)])
    out: dict = {"draws": draws, "true_rate": float(truths.mean())}
    for name, images in (("crisp", crisp), ("round_trip", trip)):
        verdicts, confusion, unclean = [], {s: {} for s in SHAPES}, 0
        for image, objs, meta in zip(images, layouts, metas):
            found, clean = read_scene(image)
            unclean += not clean
            verdicts.append(clean and satisfies(found, meta))
            for o in objs:
                near = [f for f in found if abs(f.cx - o.cx) <= MATCH_PX and abs(f.cy - o.cy) <= MATCH_PX]
                read = "missed" if not near else (near[0].shape if near[0].color == o.color else "wrong colour")
                confusion[o.shape][read] = confusion[o.shape].get(read, 0) + 1
        v = np.array(verdicts)
        out[name] = {"agreement": float((v == truths).mean()),
                     "true_scenes_rejected": float((~v[truths]).mean()) if truths.any() else None,
                     "false_scenes_accepted": float(v[~truths].mean()) if (~truths).any() else None,
                     "not_clean": unclean / draws, "confusion": confusion}
    return out
