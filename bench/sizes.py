"""The models the benchmark builds from configs, with random weights (never a checkpoint, so they run anywhere).

`real`: SANA-Sprint 1.6B / 0.6B at 1024 px (DC-AE f32c32, Gemma-2-2B), Qwen2.5-0.5B verifiers and CLIP ViT-L/14@336,
with the configs the released checkpoints ship (../shared/research/models.md). `small`: the same classes at toy
width, so that every timing path (warm-ups, compile, fp8 storage) runs on a CPU in seconds - the CI test of the GPU
benchmark. Both build the three verifiers complete: the CLIP baseline gets its vision tower and image processor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import torch

from apps.fixtures import qwen25_tokenizer
from models import SanaSprint, VHSVerifier
from models.features import ClipFeatures, HiddenFeatures
from models.verifier import VHS_INSTRUCTION, VerifierSpec, build_connector

QWEN25_VOCAB = 151936  # Qwen2.5's embedding rows; the stand-in Gemma tokenizer below uses the same ids

SANA_COMMON = dict(in_channels=32, out_channels=32, caption_channels=2304, mlp_ratio=2.5, attention_bias=False,
                   sample_size=32, patch_size=1, norm_elementwise_affine=False, norm_eps=1e-6, guidance_embeds=True,
                   guidance_embeds_scale=0.1, qk_norm="rms_norm_across_heads")


@dataclass(frozen=True)
class Preset:
    """Configs of one size class: SANA-Sprint variants by name, DC-AE, Gemma-2, Qwen2, CLIP; image size and l*."""

    sana: dict[str, dict]
    dcae: dict
    gemma: dict
    qwen: dict
    clip: dict
    size: int  # image side in pixels
    layer: int  # the block VHS reads (l*)
    sana_common: dict = field(default_factory=lambda: dict(SANA_COMMON))


REAL = Preset(
    sana={
        "sana-sprint-1.6b": dict(num_attention_heads=70, attention_head_dim=32, num_layers=20,
                                 num_cross_attention_heads=20, cross_attention_head_dim=112, cross_attention_dim=2240),
        "sana-sprint-0.6b": dict(num_attention_heads=36, attention_head_dim=32, num_layers=28,
                                 num_cross_attention_heads=16, cross_attention_head_dim=72, cross_attention_dim=1152),
    },
    dcae=dict(in_channels=3, latent_channels=32, attention_head_dim=32,
              encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
              decoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
              encoder_block_out_channels=(128, 256, 512, 512, 1024, 1024),
              decoder_block_out_channels=(128, 256, 512, 512, 1024, 1024),
              encoder_layers_per_block=(2, 2, 2, 3, 3, 3), decoder_layers_per_block=(3, 3, 3, 3, 3, 3),
              encoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
              decoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
              upsample_block_type="interpolate", downsample_block_type="Conv", decoder_norm_types="rms_norm",
              decoder_act_fns="silu", scaling_factor=0.41407),
    gemma=dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
               num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256, sliding_window=4096,
               attn_logit_softcapping=50.0, final_logit_softcapping=30.0, hidden_activation="gelu_pytorch_tanh"),
    qwen=dict(vocab_size=QWEN25_VOCAB, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
              num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1e6,
              tie_word_embeddings=True),
    clip=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=336,
              patch_size=14, projection_dim=768),
    size=1024,
    layer=7,
)

SMALL = Preset(
    sana={"sana-sprint-small": dict(num_attention_heads=2, attention_head_dim=16, num_layers=4,
                                    num_cross_attention_heads=2, cross_attention_head_dim=16, cross_attention_dim=32)},
    dcae=dict(in_channels=3, latent_channels=8, attention_head_dim=8,
              encoder_block_types=("ResBlock", "ResBlock", "EfficientViTBlock"),
              decoder_block_types=("ResBlock", "ResBlock", "EfficientViTBlock"),
              encoder_block_out_channels=(8, 16, 16), decoder_block_out_channels=(8, 16, 16),
              encoder_layers_per_block=(1, 1, 1), decoder_layers_per_block=(1, 1, 1),
              encoder_qkv_multiscales=((), (), (5,)), decoder_qkv_multiscales=((), (), (5,)),
              upsample_block_type="interpolate", downsample_block_type="Conv", decoder_norm_types="rms_norm",
              decoder_act_fns="silu", scaling_factor=0.41407),
    gemma=dict(vocab_size=QWEN25_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=2, num_key_value_heads=1, head_dim=16),
    qwen=dict(vocab_size=QWEN25_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=True),
    clip=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, image_size=56,
              patch_size=14, projection_dim=16),
    size=64,
    layer=1,
    sana_common=dict(SANA_COMMON, in_channels=8, out_channels=8, caption_channels=32, sample_size=16),
)

PRESETS = {"real": REAL, "small": SMALL}


@lru_cache(maxsize=1)
def stand_in_tokenizer():
    """Qwen2.5's tokenizer, built once per process (it takes seconds): Gemma's stand-in and the verifiers' own."""
    return qwen25_tokenizer()


@dataclass
class BenchModels:
    """One SANA-Sprint with its text encoder, and the three verifiers (VHS on h_l*, MLLM w/ CLIP, MLLM w/ AE)."""

    model: SanaSprint
    verifiers: dict[str, VHSVerifier]  # "hidden", "clip", "latent"
    clip: torch.nn.Module
    text_encoder: torch.nn.Module
    size: int
    layer: int


def build(preset: Preset, sana_name: str, device: str | torch.device, dtype: torch.dtype) -> BenchModels:
    """Build the models directly on `device` (on "meta" nothing is allocated: real sizes count on any CPU).

    Gemma's tokenizer cannot be had offline, so Qwen2.5's real vocabulary stands in for it: it splits SANA's
    instruction + prompt budget into 503 tokens where Gemma's makes about 520, so the text encoder runs at its
    real length (SanaSprint.text_tokens() says how many, and the FLOP count uses the same number)."""
    from diffusers import AutoencoderDC, SanaSprintPipeline, SanaTransformer2DModel, SCMScheduler
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        Gemma2Config,
        Gemma2Model,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    tokenizer = stand_in_tokenizer()
    with torch.device(device):
        # nn.Module.to: diffusers' ModelMixin.to would warn about fp32-only modules, of which these classes have none
        transformer = torch.nn.Module.to(SanaTransformer2DModel(**preset.sana_common, **preset.sana[sana_name]), dtype)
        vae = torch.nn.Module.to(AutoencoderDC(**preset.dcae), dtype)
        text_encoder = Gemma2Model(Gemma2Config(**preset.gemma)).to(dtype)
        llms = {k: Qwen2ForCausalLM(Qwen2Config(**preset.qwen)).to(dtype) for k in ("hidden", "clip", "latent")}
        clip = CLIPVisionModel(CLIPVisionConfig(**preset.clip)).to(dtype)
    pipe = SanaSprintPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                              scheduler=SCMScheduler(sigma_data=0.5))
    model = SanaSprint(pipe, key=f"{sana_name}@{device}")
    side = preset.clip["image_size"]
    tower = ClipFeatures(clip, CLIPImageProcessor(size={"shortest_edge": side},
                                                  crop_size={"height": side, "width": side}))
    llm_width = preset.qwen["hidden_size"]
    widths = {"hidden": model.inner_dim, "clip": preset.clip["hidden_size"], "latent": preset.dcae["latent_channels"]}
    towers = {"hidden": f"hidden_{preset.layer}", "clip": "openai/clip-vit-large-patch14-336", "latent": "vae"}
    verifiers = {}
    for kind, width in widths.items():
        spec = VerifierSpec(kind=kind, vision_tower=towers[kind], mm_hidden_size=width, llm_hidden_size=llm_width,
                            projector_type="mlp2x_gelu", layer=preset.layer if kind == "hidden" else None,
                            select_layer=-2, select_feature="patch", token_pool=1, normalize=False,
                            instruction=VHS_INSTRUCTION)
        with torch.device(device):
            connector = build_connector("mlp2x_gelu", width, llm_width).to(dtype)
        verifiers[kind] = VHSVerifier(
            llms[kind], tokenizer, connector, spec, name=f"bench-{kind}",
            hidden_features=HiddenFeatures(preset.layer, None, None) if kind == "hidden" else None,
            clip=tower if kind == "clip" else None)
    return BenchModels(model, verifiers, clip, text_encoder, preset.size, preset.layer)
