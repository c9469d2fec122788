"""Cheap pictures of candidates that were never decoded: the principal components of h_l* on the token grid."""

from __future__ import annotations

import torch

from .hidden import HiddenStates


def hidden_state_maps(hidden: HiddenStates) -> torch.Tensor:
    """[N, 3, grid_h, grid_w] in 0..1: the first three principal components of h_l*, in one basis shared by all N
    candidates (so colours compare across them). Runs no DiT block and no decoder."""
    h = hidden.hidden.float()
    n, t, c = h.shape
    flat = h.reshape(-1, c)
    flat = flat - flat.mean(0)
    _, _, v = torch.pca_lowrank(flat, q=min(3, c, flat.shape[0]), center=False)
    proj = (flat @ v[:, :3]).reshape(n, t, -1)
    if proj.shape[-1] < 3:  # fewer than 3 components exist (tiny widths): repeat the last
        proj = torch.cat([proj, proj[..., -1:].expand(n, t, 3 - proj.shape[-1])], dim=-1)
    lo, hi = proj.amin(dim=(0, 1)), proj.amax(dim=(0, 1))
    proj = (proj - lo) / (hi - lo).clamp_min(1e-6)
    return proj.transpose(1, 2).reshape(n, 3, *hidden.grid)
