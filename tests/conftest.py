"""Shared fixtures: tiny models in the real on-disk layouts, built once per test session."""

from __future__ import annotations

import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from diffusers.utils import logging as diffusers_logging  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

diffusers_logging.disable_progress_bar()
transformers_logging.disable_progress_bar()
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

from models.fixtures import TINY_RESOLUTION, build_tiny_bundle  # noqa: E402


def _geneval_metadata() -> str:
    """GenEval's prompt metadata, read where the workspace keeps it (VHS_GENEVAL_DIR overrides); never copied here."""
    dirs = [os.environ.get("VHS_GENEVAL_DIR", ""), os.path.join(ROOT, "..", "shared", "geneval"), "/work/shared/geneval"]
    paths = [os.path.join(d, "evaluation_metadata.jsonl") for d in dirs if d]
    return next((p for p in paths if os.path.isfile(p)), paths[-1])


GENEVAL = _geneval_metadata()


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> dict[str, str]:
    """Paths of a tiny SANA-Sprint folder and tiny hidden / latent / CLIP verifier folders."""
    return build_tiny_bundle(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="session")
def sana(bundle):
    from models import SanaSprint

    return SanaSprint.from_pretrained(bundle["sana"], dtype="fp32", device="cpu")


@pytest.fixture(scope="session")
def hidden_verifier(bundle):
    from models import VHSVerifier

    return VHSVerifier.from_pretrained(bundle["hidden"], dtype="fp32")


@pytest.fixture(scope="session")
def res() -> int:
    return TINY_RESOLUTION


PACK_NAME = "comfyui_vhs_under_test"


def load_pack():
    """Import the repository as a package (as ComfyUI's custom_nodes loader does), independent of its folder name."""
    import importlib.util

    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, os.path.join(ROOT, "__init__.py"),
                                                  submodule_search_locations=[ROOT])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pack(bundle, tmp_path_factory):
    """The node pack, with VHS_MODELS_DIR pointing at installed tiny models named like the real ones."""
    models_dir = tmp_path_factory.mktemp("comfy_models")
    for folder, name, key in (("sana", "Sana_Sprint_1.6B_1024px_diffusers", "sana"),
                              ("vhs", "vhs-hidden-verifier", "hidden"),
                              ("vhs", "vhs-mllm-clip-verifier", "clip"),
                              ("vhs", "vhs-ae-verifier", "latent")):
        os.makedirs(models_dir / folder, exist_ok=True)
        os.symlink(bundle[key], models_dir / folder / name)
    os.environ["VHS_MODELS_DIR"] = str(models_dir)
    return load_pack()


@pytest.fixture(scope="session")
def node_models(pack):
    """The pack's node classes with the tiny SANA-Sprint and hidden verifier loaded through the loader nodes."""
    m = pack.NODE_CLASS_MAPPINGS
    model = m["SanaSprintLoaderVHS"]().load("Sana_Sprint_1.6B_1024px_diffusers", "auto", "cpu")[0]
    verifier = m["VHSVerifierLoader"]().load("vhs-hidden-verifier", "auto", "cpu")[0]
    return m, model, verifier
