"""The released checkpoints this pack reads, and how to fetch each into a local folder (the hub is never contacted
at run time: these are instructions for the user, shown when a model is not installed)."""

from __future__ import annotations

import os

# folder name -> the commands that fill it (run them in the folder's parent, e.g. ComfyUI/models/sana)
DOWNLOADS = {
    "Sana_Sprint_1.6B_1024px_diffusers": [
        "huggingface-cli download Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers "
        "--local-dir Sana_Sprint_1.6B_1024px_diffusers"],
    "Sana_Sprint_0.6B_1024px_diffusers": [
        "huggingface-cli download Efficient-Large-Model/Sana_Sprint_0.6B_1024px_diffusers "
        "--local-dir Sana_Sprint_0.6B_1024px_diffusers"],
    "vhs-hidden-verifier": [
        "huggingface-cli download aimagelab/vhs-hidden-verifier --local-dir vhs-hidden-verifier",
        "huggingface-cli download aimagelab/vhs-checkpoints block_7_mean_bf16.pt block_7_variance_bf16.pt "
        "--repo-type dataset --local-dir vhs-hidden-verifier"],
    "vhs-mllm-clip-verifier": [
        "huggingface-cli download aimagelab/vhs-mllm-clip-verifier --local-dir vhs-mllm-clip-verifier",
        "huggingface-cli download openai/clip-vit-large-patch14-336 --local-dir vhs-mllm-clip-verifier/vision_tower"],
}


def install_hint(name: str, folder: str) -> str:
    """How to install model `name` into `folder` (one line): the download commands for a released checkpoint."""
    target = os.path.join(folder, name)
    commands = DOWNLOADS.get(name)
    if not commands:
        return f"put its folder at {target}"
    return f"put it at {target}: in {folder} run " + " && ".join(f"`{c}`" for c in commands)
