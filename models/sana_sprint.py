"""SANA-Sprint split at a DiT block: candidates run blocks 0..l*, the chosen ones resume from l*+1.

Loading uses diffusers' own `SanaSprintPipeline` from a local diffusers folder; the split forward re-uses
the transformer's own submodules (patch_embed, time_embed, caption_projection, blocks, norm_out, proj_out)
in the order `SanaTransformer2DModel.forward` calls them, so prefix + suffix equals the unsplit forward.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .errors import InputError, ModelFolderError, check_finite, check_text, require
from .hidden import HiddenStates, PromptEmbedding, check_finite_tensor, run_key
from .memory import check_memory
from .precision import DTYPES, check_storage_device, resolve_dtype, store_weights_in  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

MAX_CANDIDATES = 256
MAX_STEPS = 4
MAX_SIDE = 8192  # pixels; SANA-Sprint is trained at 1024
# Settings of the authors' reference run (aimagelab/VHS configs): 1 step, 1024 px, intermediate t 1.3
# (used only at 2 steps, as the pipeline demands), guidance as the pipeline's default.
DEFAULT_GUIDANCE = 4.5
DEFAULT_MAX_TIMESTEP = 1.57080
DEFAULT_INTERMEDIATE_TIMESTEP = 1.3

# The components of a SANA-Sprint diffusers folder: (library, classes accepted in model_index.json, weights stem).
_COMPONENTS = {
    "transformer": ("diffusers", ("SanaTransformer2DModel",), "diffusion_pytorch_model"),
    "vae": ("diffusers", ("AutoencoderDC",), "diffusion_pytorch_model"),
    "text_encoder": ("transformers", ("Gemma2Model",), "model"),
    "tokenizer": ("transformers", ("GemmaTokenizer", "GemmaTokenizerFast"), None),
    "scheduler": ("diffusers", ("SCMScheduler",), None),
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")

ProgressCallback = Callable[[int, int], None]


def check_sana_sprint_folder(path: str | os.PathLike) -> dict:
    """Check, without building anything, that `path` is a whole SANA-Sprint diffusers folder: model_index.json
    names a SanaSprintPipeline and the expected component classes, every config is readable with sane sizes, every
    weights file is whole safetensors, the tokenizer files are there. Returns model_index.json."""
    from .checkpoint import check_config_sizes, read_header, read_json, weight_files

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ModelFolderError(path, "SANA-Sprint folder not found")
    index = read_json(os.path.join(path, "model_index.json"))
    kind = index.get("_class_name")
    if kind != "SanaSprintPipeline":
        raise ModelFolderError(path, f"this folder holds a {kind or 'unknown'} model, not a SanaSprintPipeline")
    missing = []
    for name, (library, classes, stem) in _COMPONENTS.items():
        entry = index.get(name)
        if not (isinstance(entry, list) and len(entry) == 2):
            missing.append(f"{name} (not listed in model_index.json)")
            continue
        if entry[1] not in classes:
            raise ModelFolderError(path, f"model_index.json names {entry[1]!r} as the {name}; SANA-Sprint needs "
                                         f"{' or '.join(classes)}")
        sub = os.path.join(path, name)
        if not os.path.isdir(sub):
            missing.append(f"{name}/")
        elif name == "tokenizer":
            if not any(os.path.isfile(os.path.join(sub, f)) for f in _TOKENIZER_FILES):
                missing.append("tokenizer/tokenizer.json (or tokenizer.model)")
        elif name == "scheduler":
            if not os.path.isfile(os.path.join(sub, "scheduler_config.json")):
                missing.append("scheduler/scheduler_config.json")
            else:
                read_json(os.path.join(sub, "scheduler_config.json"))
        else:
            if not os.path.isfile(os.path.join(sub, "config.json")):
                missing.append(f"{name}/config.json")
            else:
                check_config_sizes(read_json(os.path.join(sub, "config.json")), os.path.join(sub, "config.json"))
            if not any(os.path.isfile(os.path.join(sub, stem + ext)) for ext in (".safetensors", ".safetensors.index.json")):
                pickles = [f for f in sorted(os.listdir(sub)) if f.endswith((".bin", ".pt", ".pth", ".ckpt"))]
                missing.append(f"{name}/ weights ({stem}.safetensors" + (
                    f"; found {pickles[0]}, but only .safetensors weights are read: convert it)" if pickles else ")"))
            else:
                for file in weight_files(sub, stem):
                    read_header(file)
    if missing:
        raise ModelFolderError(path, "incomplete SANA-Sprint folder, missing: " + ", ".join(missing))
    return index


def candidate_seeds(seed: int, n: int) -> list[int]:
    """Seeds of N candidates: seed, seed+1, ... (mod 2**64), so candidate i re-runs alone with seed+i."""
    if not 1 <= n <= MAX_CANDIDATES:
        raise InputError(f"number of candidates must be between 1 and {MAX_CANDIDATES}, got {n}")
    return [(int(seed) + i) % 2**64 for i in range(n)]


@dataclass(frozen=True)
class _StepInputs:
    sample: torch.Tensor  # x_t (sigma-scaled), float32
    model_input: torch.Tensor
    timestep: torch.Tensor  # TrigFlow t, [N]
    scm_timestep: torch.Tensor  # [N]


class SanaSprint:
    """A loaded SANA-Sprint pipeline with the split forward VHS needs (prefix, suffix, decode)."""

    def __init__(self, pipe, key: str | None = None, text_encoder_offload: bool = False):
        self.pipe = pipe
        self.key = key or f"sana-sprint@{id(pipe):x}"
        # True: the text encoder lives on the CPU and visits the model's device only to encode a prompt
        self.text_encoder_offload = text_encoder_offload
        for name in ("transformer", "text_encoder", "vae"):  # inference only: training unfreezes what it trains
            getattr(pipe, name).requires_grad_(False)

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, dtype: str | torch.dtype = "bf16", device: str | torch.device = "cpu",
        weight_storage: str | torch.dtype | None = "default", text_encoder_offload: bool = False,
    ) -> "SanaSprint":
        """Load a local SANA-Sprint diffusers folder (never the hub) computing in `dtype` on `device`.

        weight_storage='fp8_e4m3fn' (or 'fp8_e5m2') stores the transformer's and text encoder's linear weights in
        fp8, upcast layer by layer while they run; text_encoder_offload keeps the text encoder on the CPU between
        prompts.
        """
        require("diffusers")
        require("transformers")
        from diffusers import AutoencoderDC, SanaSprintPipeline, SanaTransformer2DModel, SCMScheduler
        from transformers import AutoTokenizer, Gemma2Model

        path = os.fspath(path)
        check_sana_sprint_folder(path)
        torch_dtype = resolve_dtype(dtype)
        check_storage_device(weight_storage, device)
        transformer = _load_component(SanaTransformer2DModel, path, "transformer", torch_dtype)
        vae = _load_component(AutoencoderDC, path, "vae", torch_dtype)
        text_encoder = _load_component(Gemma2Model, path, "text_encoder", torch_dtype)
        try:
            tokenizer = AutoTokenizer.from_pretrained(os.path.join(path, "tokenizer"), local_files_only=True)
        except (OSError, ValueError, ImportError, TypeError, KeyError) as e:
            raise ModelFolderError(os.path.join(path, "tokenizer"), f"the tokenizer cannot be loaded: {e}") from e
        try:
            scheduler = SCMScheduler.from_pretrained(path, subfolder="scheduler", local_files_only=True)
        except (OSError, ValueError, TypeError) as e:
            raise ModelFolderError(os.path.join(path, "scheduler"), f"the scheduler cannot be loaded: {e}") from e
        pipe = SanaSprintPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                                  scheduler=scheduler)
        pipe.set_progress_bar_config(disable=True)
        for name in ("transformer", "text_encoder"):
            store_weights_in(getattr(pipe, name), weight_storage, torch_dtype)
        pipe.transformer.to(device)
        pipe.vae.to(device)
        pipe.text_encoder.to("cpu" if text_encoder_offload else device)  # offloaded: it visits `device` per prompt
        logger.info("loaded SANA-Sprint from %s (%s, %s)", path, torch_dtype, device)
        key = f"{os.path.abspath(path)}|{torch_dtype}|{weight_storage}"
        return cls(pipe, key=key, text_encoder_offload=text_encoder_offload)

    def compile(self, **kwargs) -> "SanaSprint":
        """torch.compile each DiT block (regional compilation: identical blocks share their compiled code, and the
        split at l* is untouched) and the DC-AE decoder. kwargs go to torch.compile (mode, backend, dynamic...)."""
        for block in self.transformer.transformer_blocks:
            block.compile(**kwargs)
        self.pipe.vae.decoder.compile(**kwargs)
        return self

    # ---------------------------------------------------------------- properties
    @property
    def transformer(self):
        return self.pipe.transformer

    @property
    def num_layers(self) -> int:
        return len(self.transformer.transformer_blocks)

    @property
    def inner_dim(self) -> int:
        """The DiT's channel width (diffusers' name: heads x head dim; 2240 for SANA-Sprint 1.6B)."""
        cfg = self.transformer.config
        return cfg.num_attention_heads * cfg.attention_head_dim

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    @property
    def sigma_data(self) -> float:
        return float(self.pipe.scheduler.config.sigma_data)

    @property
    def spatial_factor(self) -> int:
        """Image sides must be multiples of this: 32 (the pipeline's rule) and the pixels per DiT token side."""
        return math.lcm(32, int(self.pipe.vae_scale_factor) * int(self.transformer.config.patch_size))

    # ---------------------------------------------------------------- memory estimates
    def activation_bytes(self, n: int, height: int, width: int) -> int:
        """Rough upper bound of the activation memory for n candidates through the DiT at this size: per token, the
        residual stream, q/k/v/out and the gated Mix-FFN ((5 + 3 x mlp_ratio) x inner_dim values). For memory managers
        that free room before a run (ComfyUI's load_models_gpu(memory_required=...)), as ComfyUI's own models do."""
        cfg = self.transformer.config
        side = int(self.pipe.vae_scale_factor) * int(cfg.patch_size)
        tokens = (height // side) * (width // side)
        per_token = (5 + 3 * float(getattr(cfg, "mlp_ratio", 2.5))) * self.inner_dim
        return int(n * tokens * per_token * self.dtype.itemsize)

    def decode_bytes(self, n: int, height: int, width: int) -> int:
        """Rough upper bound of the DC-AE decode's activation memory for n images (its full-resolution stage holds a
        few tensors of decoder_block_out_channels[0] channels per pixel)."""
        vae = self.pipe.vae
        channels = int(vae.config.decoder_block_out_channels[0])
        return int(n * height * width * channels * 6 * vae.dtype.itemsize)

    def finish_bytes(self, hidden: HiddenStates) -> int:
        """Rough upper bound of finishing and decoding these candidates (suffix + DC-AE decode)."""
        n, height, width = len(hidden), hidden.height, hidden.width
        return self.activation_bytes(n, height, width) + self.decode_bytes(n, height, width)

    # ---------------------------------------------------------------- prompt
    def text_tokens(self, max_sequence_length: int = 300) -> int:
        """How many tokens the text encoder reads per prompt: SANA's instruction plus the prompt's budget, padded
        (the pipeline's max_length_all; about 520 with Gemma-2's tokenizer). Any prompt costs the same."""
        return len(self.pipe.tokenizer.encode("\n".join(sana_instruction()))) + max_sequence_length - 2

    def encode_prompt(self, prompt: str, max_sequence_length: int = 300) -> PromptEmbedding:
        """Encode one prompt with SANA's instruction template (as the pipeline does), once for all candidates."""
        check_text(prompt)
        instruction = sana_instruction()
        tok = self.pipe.tokenizer
        chi = "\n".join(instruction)
        budget = self.text_tokens(max_sequence_length)
        used = len(tok.encode(chi + prompt))
        if used > budget:
            raise InputError(
                f"the prompt is too long: {used - len(tok.encode(chi))} tokens where SANA-Sprint reads at most "
                f"{max_sequence_length - 2}; shorten it"
            )
        encoder = self.pipe.text_encoder
        if self.text_encoder_offload:
            encoder.to(self.device)
        try:
            with torch.inference_mode():
                embeds, mask = self.pipe.encode_prompt(
                    prompt,
                    num_images_per_prompt=1,
                    device=encoder.device,
                    clean_caption=False,
                    max_sequence_length=max_sequence_length,
                    complex_human_instruction=instruction,
                )
        finally:
            if self.text_encoder_offload:
                encoder.to("cpu")
                _empty_cache(self.device)
        return PromptEmbedding(prompt=prompt, embeds=embeds, mask=mask, model_key=self.key)

    # ---------------------------------------------------------------- split forward
    def prefix(
        self,
        prompt: str | PromptEmbedding,
        seeds: Sequence[int],
        layer: int,
        height: int = 1024,
        width: int = 1024,
        steps: int = 1,
        guidance: float = DEFAULT_GUIDANCE,
        max_timestep: float = DEFAULT_MAX_TIMESTEP,
        intermediate_timestep: float | None = DEFAULT_INTERMEDIATE_TIMESTEP,
        callback: ProgressCallback | None = None,
        noise: torch.Tensor | None = None,
        generators: Sequence[torch.Generator] | None = None,
    ) -> HiddenStates:
        """Run N candidates (one per seed) up to and including DiT block `layer` of the last step.

        Earlier steps of a few-step schedule run whole; blocks after `layer` of the last step are not run.
        `callback(done, total)` is called after every block (raise from it to cancel).

        Where the noise comes from: by default candidate i draws it from a fresh CPU generator seeded with seeds[i]
        (so it can be re-made alone). `noise` ([N, C, h, w], standard normal) gives the starting noise itself (e.g.
        ComfyUI's NOISE); the seeds then only label the candidates. `generators` (one CPU generator per candidate)
        are drawn from and advanced exactly as SanaSprintPipeline advances the generator it is given - the initial
        noise, then one draw per scheduler step, the last step's unused draw included - so generators carried from
        prompt to prompt reproduce a loop of pipeline calls (the authors' CLI).
        """
        hidden, _ = self._prefix(prompt, seeds, layer, height, width, steps, guidance, max_timestep,
                                 intermediate_timestep, callback, capture=(), noise=noise, generators=generators)
        return hidden

    def capture(self, prompt: str | PromptEmbedding, seeds: Sequence[int], blocks: Sequence[int], height: int = 1024,
                width: int = 1024, steps: int = 1, **kwargs) -> tuple[HiddenStates, dict[int, torch.Tensor]]:
        """Like prefix() up to the deepest of `blocks`, also returning the output of every block in `blocks` (layer
        ablations and training data: one run gives h_l for several l)."""
        blocks = sorted({int(b) for b in blocks})
        if not blocks:
            raise InputError("capture() needs at least one block")
        return self._prefix(prompt, seeds, blocks[-1], height, width, steps, capture=blocks[:-1], **kwargs)

    def _prefix(self, prompt, seeds, layer, height, width, steps, guidance=DEFAULT_GUIDANCE,
                max_timestep=DEFAULT_MAX_TIMESTEP, intermediate_timestep=DEFAULT_INTERMEDIATE_TIMESTEP, callback=None,
                capture: Sequence[int] = (), noise: torch.Tensor | None = None,
                generators: Sequence[torch.Generator] | None = None) -> tuple[HiddenStates, dict[int, torch.Tensor]]:
        seeds = [int(s) for s in seeds]
        layer = int(layer)
        self.check_request(seeds, layer, height, width, steps, guidance, max_timestep, intermediate_timestep)
        if any(not 0 <= c <= layer for c in capture):
            raise InputError(f"captured blocks {list(capture)} must lie in 0..{layer} (the last block run)")
        emb = prompt if isinstance(prompt, PromptEmbedding) else self.encode_prompt(prompt)
        if emb.model_key != self.key:
            raise InputError("the prompt embedding was made by another SANA-Sprint model; encode it again")
        n = len(seeds)
        check_memory(self.activation_bytes(n, height, width), self.device,
                     f"{n} candidates at {width}x{height} px", per_item=self.activation_bytes(1, height, width))
        device = self.device
        # 1. the schedule, each candidate's noise and the guidance embedding input (as SanaSprintPipeline.__call__)
        timesteps = self._timesteps(steps, max_timestep, intermediate_timestep)
        shape = self.noise_shape(n, height, width)
        caller_generators = generators is not None
        if noise is not None and caller_generators:
            raise InputError("give the starting noise or the generators, not both")
        if caller_generators and len(generators) != n:
            raise InputError(f"{len(generators)} generators for {n} candidates")
        if not caller_generators:  # also what the later steps of a few-step schedule draw from
            generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        if noise is not None:
            if tuple(noise.shape) != shape:
                raise InputError(f"the noise has shape {tuple(noise.shape)}; {n} candidates at {width}x{height} px "
                                 f"need {shape}")
            check_finite_tensor(noise, "the given noise values", list(range(n)))
            start = noise.to(device=device, dtype=torch.float32)
        else:
            start = _randn(shape, generators, device)
        sample = start * self.sigma_data
        guidance_t = self._guidance(guidance, n, emb.embeds.dtype)
        # 2. the prompt's caption projection, once for all candidates
        enc, enc_bias = self._project_prompt(emb)
        total = (steps - 1) * self.num_layers + layer + 1
        progress = _Progress(callback, total)
        captured: dict[int, torch.Tensor] = {}
        with torch.inference_mode():
            for i in range(steps):
                step = self._step_inputs(sample, timesteps[i], n)
                x, temb, emb_t, grid = self._embed(step, guidance_t)
                if i < steps - 1:
                    # 3. earlier steps of a few-step schedule: the whole DiT, then the SCM update to the next time
                    x = self._run_blocks(x, temb, enc, enc_bias, grid, 0, self.num_layers, progress)
                    sample = self._trigflow_step(self._head(x, emb_t, grid), step, timesteps[i + 1], generators)
                    continue
                # 4. the last step stops after block `layer`, keeping the captured blocks on the way
                first = 0
                for stop in [*capture, layer]:
                    x = self._run_blocks(x, temb, enc, enc_bias, grid, first, stop + 1, progress)
                    captured[stop], first = x, stop + 1
        if caller_generators:  # SCMScheduler.step draws noise at the last step too, unused: advance as it does
            _randn(shape, generators, torch.device("cpu"))
        check_finite_tensor(x, "the DiT hidden states", list(range(n)))
        settings = {"layer": layer, "height": int(height), "width": int(width), "steps": int(steps),
                    "guidance": float(guidance), "max_timestep": float(max_timestep),
                    "intermediate_timestep": float(intermediate_timestep) if steps == 2 else None}
        hidden = HiddenStates(
            hidden=x,
            layer=layer,
            num_layers=self.num_layers,
            seeds=tuple(seeds),
            indices=tuple(range(n)),
            prompt=emb.prompt,
            sample=step.sample,
            model_input=step.model_input,
            timestep=step.timestep,
            scm_timestep=step.scm_timestep,
            temb=temb,
            embedded_timestep=emb_t,
            encoder_hidden_states=enc,
            encoder_bias=enc_bias,
            grid=grid,
            height=int(height),
            width=int(width),
            steps=int(steps),
            guidance=float(guidance),
            max_timestep=float(max_timestep),
            model_key=self.key,
            run_key=run_key(self.key, emb.prompt, seeds, settings, "" if noise is None and not caller_generators else
                            hashlib.sha256(start.cpu().numpy().tobytes()).hexdigest()),
        )
        return hidden, {c: captured[c] for c in capture}

    def noise_shape(self, n: int, height: int, width: int) -> tuple[int, int, int, int]:
        """The shape of the starting noise of n candidates at this size ([N, latent channels, h, w])."""
        sf = int(self.pipe.vae_scale_factor)
        return n, int(self.transformer.config.in_channels), height // sf, width // sf

    def advance_noise(self, generators: Sequence[torch.Generator], height: int, width: int, steps: int = 1) -> None:
        """Draw from `generators` what prefix(generators=...) would, without running anything: the initial noise and
        one draw per step (resuming a run that carries generators from prompt to prompt)."""
        shape = self.noise_shape(len(generators), height, width)
        for _ in range(1 + int(steps)):
            _randn(shape, list(generators), torch.device("cpu"))

    def suffix(self, hidden: HiddenStates, callback: ProgressCallback | None = None) -> torch.Tensor:
        """Finish the given candidates: blocks l*+1.., output head, SCM update. Returns latents [k, C, h, w] (fp32)."""
        self._check_hidden(hidden)
        check_memory(self.activation_bytes(len(hidden), hidden.height, hidden.width), self.device,
                     f"finishing {len(hidden)} candidates at {hidden.width}x{hidden.height} px",
                     per_item=self.activation_bytes(1, hidden.height, hidden.width))
        progress = _Progress(callback, self.num_layers - hidden.layer - 1)
        step = _StepInputs(hidden.sample, hidden.model_input, hidden.timestep, hidden.scm_timestep)
        with torch.inference_mode():
            x = self._run_blocks(
                hidden.hidden.to(self.device),
                hidden.temb.to(self.device),
                hidden.encoder_hidden_states.to(self.device),
                None if hidden.encoder_bias is None else hidden.encoder_bias.to(self.device),
                hidden.grid,
                hidden.layer + 1,
                self.num_layers,
                progress,
            )
            raw = self._head(x, hidden.embedded_timestep.to(self.device), hidden.grid)
            latents = self._denoise(raw, step) / self.sigma_data
        check_finite_tensor(latents, "the finished latents", hidden.indices)
        return latents

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """DC-AE decode of final latents to images [k, 3, H, W], float32 in 0..1 (the pipeline's postprocess)."""
        vae = self.pipe.vae
        n, _, h, w = latents.shape
        side = int(self.pipe.vae_scale_factor)
        check_memory(self.decode_bytes(n, h * side, w * side), self.device, f"decoding {n} images at "
                     f"{w * side}x{h * side} px", per_item=self.decode_bytes(1, h * side, w * side))
        with torch.inference_mode():
            image = vae.decode(latents.to(self.device, vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
            check_finite_tensor(image, "the decoded images", list(range(n)))
            return self.pipe.image_processor.postprocess(image, output_type="pt").float()

    # ---------------------------------------------------------------- internals
    def check_request(self, seeds: Sequence[int], layer: int, height: int, width: int, steps: int = 1,
                      guidance: float = DEFAULT_GUIDANCE, max_timestep: float = DEFAULT_MAX_TIMESTEP,
                      intermediate_timestep: float | None = DEFAULT_INTERMEDIATE_TIMESTEP) -> None:
        """Raise a clear InputError for a request this model cannot run (N, block, size, steps, non-finite settings),
        before anything runs or is written."""
        if not 1 <= len(seeds) <= MAX_CANDIDATES:
            raise InputError(f"number of candidates must be between 1 and {MAX_CANDIDATES}, got {len(seeds)}")
        if not 0 <= layer < self.num_layers:
            raise InputError(f"layer {layer} is out of range: this SANA-Sprint has blocks 0..{self.num_layers - 1}")
        if not 1 <= steps <= MAX_STEPS:
            raise InputError(f"steps must be between 1 and {MAX_STEPS} for SANA-Sprint, got {steps}")
        f = self.spatial_factor
        for name, v in (("height", height), ("width", width)):
            if v < f or v % f or v > MAX_SIDE:
                raise InputError(f"{name} {v} must be a positive multiple of {f} for this model, at most {MAX_SIDE}")
        check_finite(guidance=guidance, max_timestep=max_timestep,
                     intermediate_timestep=intermediate_timestep if steps == 2 else None)
        if not 0 < max_timestep <= DEFAULT_MAX_TIMESTEP:
            raise InputError(f"max_timestep must lie in (0, {DEFAULT_MAX_TIMESTEP}] (pi/2 is pure noise), "
                             f"got {max_timestep}")
        if steps == 2 and not 0 < intermediate_timestep < max_timestep:
            raise InputError(f"intermediate_timestep must lie between 0 and max_timestep ({max_timestep}), got "
                             f"{intermediate_timestep}")

    def _check_hidden(self, hidden: HiddenStates) -> None:
        if not isinstance(hidden, HiddenStates):
            raise InputError(f"expected candidate hidden states, got {type(hidden).__name__}")
        if hidden.model_key != self.key or hidden.num_layers != self.num_layers or hidden.dim != self.inner_dim:
            raise InputError("these hidden states were made by another SANA-Sprint model; use the same model to finish them")

    def _timesteps(self, steps: int, max_timestep: float, intermediate: float | None) -> torch.Tensor:
        sched = self.pipe.scheduler
        sched.set_timesteps(
            steps, device=self.device, max_timesteps=max_timestep, intermediate_timesteps=intermediate if steps == 2 else None
        )
        return sched.timesteps.clone()

    def _guidance(self, guidance: float, n: int, dtype: torch.dtype) -> torch.Tensor:
        # Mirrors SanaSprintPipeline.__call__: the guidance embedding input is guidance * guidance_embeds_scale.
        g = torch.full([1], float(guidance), device=self.device, dtype=torch.float32).expand(n).to(dtype)
        return g * self.transformer.config.guidance_embeds_scale

    def _project_prompt(self, emb: PromptEmbedding) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Mirrors SanaTransformer2DModel.forward: caption_projection, caption_norm, and the mask as an additive bias.
        tr = self.transformer
        with torch.inference_mode():
            enc = tr.caption_norm(tr.caption_projection(emb.embeds.to(self.device, self.dtype)))
            mask = emb.mask.to(self.device)
            bias = ((1 - mask.to(self.dtype)) * -10000.0).unsqueeze(1)
        return enc, bias

    def _step_inputs(self, sample: torch.Tensor, t: torch.Tensor, n: int) -> _StepInputs:
        # Mirrors SanaSprintPipeline.__call__'s denoising loop: TrigFlow t -> SCM timestep s, and the scaled input.
        timestep = t.expand(n)
        scm_t = torch.sin(timestep) / (torch.cos(timestep) + torch.sin(timestep))
        s = scm_t.view(-1, 1, 1, 1)
        model_input = (sample / self.sigma_data) * torch.sqrt(s**2 + (1 - s) ** 2)
        return _StepInputs(sample, model_input, timestep, scm_t)

    def _embed(self, step: _StepInputs, guidance: torch.Tensor):
        # Mirrors SanaTransformer2DModel.forward up to the blocks: patch embedding and time (+ guidance) embedding.
        tr = self.transformer
        x_in = step.model_input.to(self.dtype)
        p = tr.config.patch_size
        grid = (x_in.shape[-2] // p, x_in.shape[-1] // p)
        # contiguous: patch_embed returns a transposed view, and every block then sees one memory layout (a compiled
        # block otherwise makes a second graph for block 0; the values are the same)
        x = tr.patch_embed(x_in).contiguous()
        if tr.config.guidance_embeds:
            temb, emb_t = tr.time_embed(step.scm_timestep, guidance=guidance, hidden_dtype=x.dtype)
        else:
            temb, emb_t = tr.time_embed(step.scm_timestep, batch_size=x.shape[0], hidden_dtype=x.dtype)
        return x, temb, emb_t, grid

    def _run_blocks(self, x, temb, enc, enc_bias, grid, start: int, stop: int, progress: "_Progress") -> torch.Tensor:
        # Mirrors the block loop of SanaTransformer2DModel.forward (same positional arguments), for blocks start..stop-1.
        n = x.shape[0]
        enc = enc.expand(n, -1, -1)
        enc_bias = None if enc_bias is None else enc_bias.expand(n, -1, -1)
        for block in self.transformer.transformer_blocks[start:stop]:
            x = block(x, None, enc, enc_bias, temb, grid[0], grid[1])
            progress.advance()
        return x

    def _head(self, x: torch.Tensor, emb_t: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        # Mirrors the end of SanaTransformer2DModel.forward: modulated norm_out, proj_out, unpatchify.
        tr = self.transformer
        p = tr.config.patch_size
        x = tr.proj_out(tr.norm_out(x, emb_t, tr.scale_shift_table))
        x = x.reshape(x.shape[0], grid[0], grid[1], p, p, -1).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(x.shape[0], -1, grid[0] * p, grid[1] * p)

    def _denoise(self, raw: torch.Tensor, step: _StepInputs) -> torch.Tensor:
        """TrigFlow x0 prediction from the raw transformer output.

        Mirrors SanaSprintPipeline.__call__ (the SCM -> TrigFlow flow conversion) followed by SCMScheduler.step
        (prediction_type "trigflow": x0 = cos(t) x_t - sin(t) F). The pipeline-equality tests guard it."""
        s = step.scm_timestep.view(-1, 1, 1, 1)
        norm = torch.sqrt(s**2 + (1 - s) ** 2)
        flow = ((1 - 2 * s) * step.model_input + (1 - 2 * s + 2 * s**2) * raw) / norm
        flow = flow.float() * self.sigma_data
        t = step.timestep.view(-1, 1, 1, 1).to(flow.dtype)
        return torch.cos(t) * step.sample - torch.sin(t) * flow

    def _trigflow_step(self, raw, step: _StepInputs, t_next: torch.Tensor, generators) -> torch.Tensor:
        """One intermediate SCM step: predict x0, then re-noise to t_next with each candidate's own generator
        (mirrors SCMScheduler.step for a step that is not the last)."""
        x0 = self._denoise(raw, step)
        noise = _randn(tuple(x0.shape), generators, x0.device) * self.sigma_data
        return torch.cos(t_next) * x0 + torch.sin(t_next) * noise


class _Progress:
    """Counts finished blocks and forwards them to a user callback (which may raise to cancel)."""

    def __init__(self, callback: ProgressCallback | None, total: int):
        self.callback, self.total, self.done = callback, max(int(total), 0), 0

    def advance(self) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)


def _randn(shape: tuple[int, ...], generators: list[torch.Generator], device) -> torch.Tensor:
    """Per-candidate float32 noise drawn on the CPU (same stream as diffusers' randn_tensor with a generator list)."""
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(shape, generator=generators, device=torch.device("cpu"), dtype=torch.float32).to(device)


def _empty_cache(device: torch.device) -> None:
    """Give freed accelerator memory back (after moving a module off the device)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _load_component(cls, path: str, name: str, dtype: torch.dtype):
    """One pipeline component through its library's own from_pretrained (safetensors only, local files only); the
    library's loading report must list no missing or misshapen tensor, and nothing may stay without data."""
    from .checkpoint import refuse_meta, refuse_missing, weight_files

    folder = os.path.join(path, name)
    stem = _COMPONENTS[name][2]
    try:
        if cls.__module__.startswith("diffusers"):
            model, info = cls.from_pretrained(path, subfolder=name, output_loading_info=True, local_files_only=True,
                                              use_safetensors=True, **_dtype_kwarg(dtype))
        else:
            model, info = cls.from_pretrained(folder, output_loading_info=True, local_files_only=True,
                                              use_safetensors=True, dtype=dtype)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise ModelFolderError(folder, f"the {name} cannot be loaded: {e}") from e
    refuse_missing(info.get("missing_keys", ()), info.get("mismatched_keys", ()), weight_files(folder, stem), folder)
    refuse_meta(model, folder)
    return model.eval()


def _dtype_kwarg(dtype: torch.dtype) -> dict:
    """diffusers renamed `torch_dtype` to `dtype`; pass whichever the installed version understands."""
    try:
        from diffusers.utils.deprecation_utils import _TORCH_DTYPE_DEPRECATION_MESSAGE  # noqa: F401
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


@functools.lru_cache(maxsize=1)
def _chi_template() -> tuple[str, ...]:
    from diffusers import SanaSprintPipeline

    return tuple(inspect.signature(SanaSprintPipeline.__call__).parameters["complex_human_instruction"].default)


def sana_instruction() -> list[str]:
    """SANA's default instruction template, taken (once) from the installed SanaSprintPipeline itself."""
    return list(_chi_template())
