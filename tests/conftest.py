"""Shared fixtures: tiny models in the real on-disk layouts, built once per test session; the real ComfyUI for the
node tests (VHS_COMFYUI; `bash run.sh test` provides ComfyUI 0.3.75)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
sys.path.insert(1, os.path.join(ROOT, "tools"))  # tools/build_workflows.py: the one list of shipped workflows
COMFY = os.environ.get("VHS_COMFYUI")
if COMFY:  # ComfyUI first on the path: its top-level `nodes` module must win over this repository's nodes/ package
    sys.path.insert(0, os.path.abspath(COMFY))
    from comfy.cli_args import args as _comfy_args  # noqa: E402

    _comfy_args.cpu = True  # before anything imports comfy.model_management (no CUDA here)

from diffusers.utils import logging as diffusers_logging  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

diffusers_logging.disable_progress_bar()
transformers_logging.disable_progress_bar()
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

from apps.fixtures import TINY_RESOLUTION, build_tiny_bundle  # noqa: E402


def needs_comfyui() -> None:
    """Node tests run against the real ComfyUI (the V3 node API lives there): skip, saying why, without one - except
    on CI, where a missing ComfyUI is a failure."""
    if COMFY:
        return
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the node tests against a real ComfyUI: VHS_COMFYUI is not set "
                           "(use `bash run.sh test`)")
    pytest.skip("needs a real ComfyUI: set VHS_COMFYUI=/path/to/ComfyUI (`bash run.sh test` provides one)")


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
REAL_NAMES = {"sana": {"Sana_Sprint_1.6B_1024px_diffusers": "sana"},
              "vhs": {"vhs-hidden-verifier": "hidden", "vhs-mllm-clip-verifier": "clip", "vhs-ae-verifier": "latent"}}


def load_pack():
    """Import the repository as a package (as ComfyUI's custom_nodes loader does), independent of its folder name."""
    import importlib.util

    needs_comfyui()
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, os.path.join(ROOT, "__init__.py"),
                                                  submodule_search_locations=[ROOT])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


class Pack:
    """The loaded pack with its nodes by id, as ComfyUI registers them."""

    def __init__(self, module):
        self.module = module
        self.nodes = {cls.GET_SCHEMA().node_id: cls for cls in module.nodes.NODES}
        self.display = {node_id: cls.GET_SCHEMA().display_name for node_id, cls in self.nodes.items()}
        self.host = module.nodes.host

    def run(self, node_id: str, **inputs):
        """Run one node as ComfyUI would: validate_inputs on the literal inputs, then execute -> NodeOutput."""
        from graph import run_node

        return run_node(self.nodes[node_id], inputs)


@pytest.fixture(scope="session")
def pack(bundle, tmp_path_factory) -> Pack:
    """The node pack in the real ComfyUI, with tiny models installed under the real models' names."""
    module = load_pack()
    import folder_paths

    models_dir = tmp_path_factory.mktemp("comfy_models")
    for folder, names in REAL_NAMES.items():
        os.makedirs(models_dir / folder, exist_ok=True)
        for name, role in names.items():
            os.symlink(bundle[role], models_dir / folder / name)
        folder_paths.add_model_folder_path(folder, str(models_dir / folder))
    folder_paths.set_output_directory(str(tmp_path_factory.mktemp("comfy_output")))
    return Pack(module)


@pytest.fixture(scope="session")
def node_models(pack):
    """The tiny SANA-Sprint and hidden verifier loaded through the loader nodes."""
    model = pack.run("SanaSprintLoaderVHS", model_name="Sana_Sprint_1.6B_1024px_diffusers", dtype="auto",
                     device="cpu")[0]
    verifier = pack.run("VHSVerifierLoader", verifier_name="vhs-hidden-verifier", dtype="auto", device="cpu")[0]
    return pack, model, verifier


@pytest.fixture(scope="session")
def packed_archive(tmp_path_factory) -> str:
    """The registry archive of the pack as `comfy node pack` builds it (git-tracked files minus .comfyignore)."""
    import shutil
    import subprocess

    comfy = shutil.which("comfy", path=os.path.dirname(sys.executable)) or shutil.which("comfy")
    assert comfy, "comfy-cli is a test dependency (requirements-dev.txt)"
    env = dict(os.environ, DO_NOT_TRACK="1")
    subprocess.run([comfy, "--skip-prompt", "tracking", "disable"], cwd=ROOT, env=env, capture_output=True, timeout=120)
    out = subprocess.run([comfy, "--skip-prompt", "node", "pack"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    archive = os.path.join(ROOT, "node.zip")
    assert out.returncode == 0 and os.path.isfile(archive), out.stdout + out.stderr
    target = str(tmp_path_factory.mktemp("packed") / "node.zip")
    shutil.move(archive, target)
    return target
