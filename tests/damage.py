"""Damaged copies of good model folders, one defect each: what users really end up with (interrupted downloads, the
wrong folder, a hand-edited or hostile config, a pickle where safetensors belong). Every defect must be one clear
error naming the file, before anything is built - never random weights, a raw library traceback or a stand-in."""

from __future__ import annotations

import json
import os
import pickle
import shutil

from safetensors.torch import load_file, save_file


def _weights(folder: str) -> str:
    for name in ("model.safetensors", "diffusion_pytorch_model.safetensors"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise FileNotFoundError(folder)


def _edit_json(path: str, **changes) -> None:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data.update(changes)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


def _drop_tensors(path: str, keep) -> None:
    tensors = load_file(path)
    save_file({k: v for k, v in tensors.items() if keep(k)}, path, metadata={"format": "pt"})


def _truncate(path: str, fraction: float = 0.5) -> None:
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * fraction)])


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


class Evil:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickle_file(path: str) -> None:
    with open(path, "wb") as f:
        pickle.dump(Evil(os.path.join(os.path.dirname(path), "..", "pwned")), f)


def _pickle_instead(folder: str, stem: str) -> None:
    os.remove(os.path.join(folder, f"{stem}.safetensors"))
    _pickle_file(os.path.join(folder, f"{stem}.bin"))


# defect -> (how to make it, a phrase the error must contain)
SANA_DEFECTS = {
    "model_index_empty": (lambda d: _write(f"{d}/model_index.json", ""), "model_index.json is empty"),
    "model_index_not_json": (lambda d: _write(f"{d}/model_index.json", "{oops"), "model_index.json is not valid JSON"),
    "other_pipeline": (lambda d: _edit_json(f"{d}/model_index.json", _class_name="StableDiffusionPipeline"),
                       "StableDiffusionPipeline model, not a SanaSprintPipeline"),
    "other_transformer_class": (lambda d: _edit_json(f"{d}/model_index.json",
                                                     transformer=["diffusers", "UNet2DConditionModel"]),
                                "names 'UNet2DConditionModel' as the transformer"),
    "transformer_truncated": (lambda d: _truncate(_weights(f"{d}/transformer")), "damaged or truncated"),
    "transformer_zero_bytes": (lambda d: _truncate(_weights(f"{d}/transformer"), 0.0), "the weights file is empty"),
    "transformer_missing_block": (lambda d: _drop_tensors(_weights(f"{d}/transformer"),
                                                          lambda k: "transformer_blocks.1." not in k),
                                  "lacks 23 tensor(s) the model needs: transformer_blocks.1."),
    "vae_missing_tensors": (lambda d: _drop_tensors(_weights(f"{d}/vae"), lambda k: not k.startswith("decoder.")),
                            "lacks"),
    "text_encoder_missing_layer": (lambda d: _drop_tensors(_weights(f"{d}/text_encoder"),
                                                           lambda k: "layers.1." not in k), "lacks"),
    "no_tokenizer": (lambda d: [os.remove(os.path.join(d, "tokenizer", f)) for f in os.listdir(f"{d}/tokenizer")
                                if f.startswith("tokenizer")], "tokenizer/tokenizer.json"),
    "absurd_config": (lambda d: _edit_json(f"{d}/transformer/config.json", num_layers=100_000),
                      "num_layers=100000 is not a size this loader accepts"),
    "pickle_weights": (lambda d: _pickle_instead(f"{d}/transformer", "diffusion_pytorch_model"),
                       "only .safetensors weights are read"),
}

VERIFIER_DEFECTS = {
    "config_not_json": (lambda d: _write(f"{d}/config.json", "not json"), "config.json is not valid JSON"),
    "config_empty": (lambda d: _write(f"{d}/config.json", ""), "config.json is empty"),
    "plain_qwen2": (lambda d: _edit_json(f"{d}/config.json", model_type="qwen2"), "model_type 'qwen2'"),
    "missing_layer": (lambda d: _drop_tensors(_weights(d), lambda k: "layers.1." not in k),
                      "model.safetensors lacks 12 tensor(s) the model needs: model.layers.1."),
    "missing_embeddings": (lambda d: _drop_tensors(_weights(d), lambda k: "embed_tokens" not in k),
                           "the model needs: lm_head.weight, model.embed_tokens.weight"),
    "only_projector": (lambda d: _drop_tensors(_weights(d), lambda k: "mm_projector" in k), "lacks"),
    "no_connector": (lambda d: _drop_tensors(_weights(d), lambda k: "mm_projector" not in k),
                     "no connector weights model.mm_projector.0.weight"),
    "absurd_projector": (lambda d: _edit_json(f"{d}/config.json", mm_projector_type="mlp100000x_gelu"),
                         "unsupported mm_projector_type 'mlp100000x_gelu'"),
    "huge_mm_hidden_size": (lambda d: _edit_json(f"{d}/config.json", mm_hidden_size=10**9),
                            "mm_hidden_size=1000000000 is not a size this loader accepts"),
    "wrong_mm_hidden_size": (lambda d: _edit_json(f"{d}/config.json", mm_hidden_size=48),
                             "connector tensor model.mm_projector.0.weight is [32, 32], but the config"),
    "weights_truncated": (lambda d: _truncate(_weights(d)), "damaged or truncated"),
    "weights_zero_bytes": (lambda d: _truncate(_weights(d), 0.0), "the weights file is empty"),
    "no_tokenizer": (lambda d: [os.remove(os.path.join(d, f)) for f in os.listdir(d) if f.startswith("tokenizer")],
                     "no tokenizer files"),
    "pickle_weights": (lambda d: _pickle_instead(d, "model"), "only .safetensors weights are read"),
    "pickled_stats": (lambda d: _pickle_file(os.path.join(d, "block_1_mean_bf16.pt")), "tensors only"),
}


def damaged(good: str, root: str, defect: str, kind: str = "sana") -> tuple[str, str]:
    """A copy of the model folder `good` under `root` with one defect; returns (folder, expected error phrase)."""
    table = SANA_DEFECTS if kind == "sana" else VERIFIER_DEFECTS
    make, phrase = table[defect]
    folder = os.path.join(root, f"{kind}_{defect}")
    if not os.path.isdir(folder):
        shutil.copytree(good, folder)
        make(folder)
    return folder, phrase
