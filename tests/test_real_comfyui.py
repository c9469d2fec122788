"""The pack inside a real ComfyUI: headless server on the CPU, /object_info, every workflow through POST /prompt.

Needs a ComfyUI checkout in VHS_COMFYUI (`bash run.sh test` provides ComfyUI 0.3.75 there). Without it these
tests skip, saying so; on CI (CI=true) a missing ComfyUI is a failure, never a skip.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest
from PIL import Image

from graph import load, node_inputs, workflow_files
from tools.comfyui_server import PACK_DIR_NAME, ComfyServer, get_json

COMFY = os.environ.get("VHS_COMFYUI")

if not COMFY:
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the real-ComfyUI tests: VHS_COMFYUI is not set (use `bash run.sh test`)")
    pytest.skip("needs a real ComfyUI: set VHS_COMFYUI=/path/to/ComfyUI (`bash run.sh test` provides one)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    models = {"sana": {"Sana_Sprint_1.6B_1024px_diffusers": bundle["sana"]},
              "vhs": {"vhs-hidden-verifier": bundle["hidden"], "vhs-mllm-clip-verifier": bundle["clip"]}}
    srv = ComfyServer(COMFY, str(tmp_path_factory.mktemp("comfy_base")), models)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def object_info(server):
    return server.object_info()


def test_pack_imports_without_failure(server):
    log = server.log()
    failed = server.import_failures()
    assert not failed, "\n".join(failed) + "\n" + log[-4000:]
    assert PACK_DIR_NAME in log, "ComfyUI did not report loading the pack"


def choices(object_info: dict, node: str, name: str) -> list[str]:
    spec = object_info[node]["input"]["required"][name]
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


def test_object_info_lists_every_node_with_its_inputs(pack, object_info):
    for node_id, cls in pack.nodes.items():
        assert node_id in object_info, f"{node_id} missing from /object_info"
        info = object_info[node_id]
        assert info["display_name"] == pack.display[node_id]
        assert info["category"] == cls.GET_SCHEMA().category and info["python_module"].endswith(PACK_DIR_NAME)
        declared = list(info["input"]["required"]) + list(info["input"].get("optional", {}))
        assert declared == [name for name, _, _ in node_inputs(cls)]
        assert info["output"] == list(cls.RETURN_TYPES)
        for name, spec in {**info["input"]["required"], **info["input"].get("optional", {})}.items():
            assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip in the real UI"
    loader = choices(object_info, "SanaSprintLoaderVHS", "model_name")
    assert "Sana_Sprint_1.6B_1024px_diffusers" in loader, "extra_model_paths.yaml models were not listed"
    assert "embedded: ShapeWorld demo (64 px)" in loader
    assert "vhs-hidden-verifier" in choices(object_info, "VHSVerifierLoader", "verifier_name")


def test_workflow_templates_are_served(server):
    templates = get_json(f"{server.url}/workflow_templates")
    names = set(templates.get(PACK_DIR_NAME, []))
    assert {os.path.splitext(os.path.basename(p))[0] for p in workflow_files()} == names
    for name in names:  # the workflow and the template browser's card image, as the browser asks for them
        base = f"{server.url}/api/workflow_templates/{PACK_DIR_NAME}/{urllib.parse.quote(name)}"
        with urllib.request.urlopen(f"{base}.json", timeout=10) as r:
            assert json.loads(r.read())["nodes"]
        with urllib.request.urlopen(f"{base}.jpg", timeout=10) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
            with Image.open(io.BytesIO(r.read())) as im:
                assert im.format == "JPEG" and im.size == (640, 360)


def test_node_help_pages_are_served(server, pack):
    """The node-docs panel fetches /extensions/<pack>/docs/<node>.md (after trying a per-locale file)."""
    for node_id, display in pack.display.items():
        with urllib.request.urlopen(f"{server.url}/extensions/{PACK_DIR_NAME}/docs/{node_id}.md", timeout=10) as r:
            assert r.status == 200 and r.read().decode("utf-8").startswith(f"# {display}\n")


def _errors(entry: dict) -> str:
    """The node and message of each execution error in a history entry (no tensors, no tracebacks)."""
    return "; ".join(f"{m[1].get('node_type')}: {m[1].get('exception_type')}: {m[1].get('exception_message', '').strip()}"
                     for m in entry["status"].get("messages", []) if m[0] == "execution_error") or "no error message"


from test_workflows import with_embedded_models  # noqa: E402


def _prompt(object_info: dict, path: str) -> dict:
    """A shipped workflow as the frontend would queue it (comfy-cli's converter), loaders switched to the embedded
    models where it names real ones (no real weights in CI); N, sizes and budgets as shipped."""
    from comfy_cli.workflow_to_api import convert_ui_to_api

    return with_embedded_models(convert_ui_to_api(load(path), object_info))


@pytest.mark.parametrize("path", workflow_files(), ids=os.path.basename)
def test_every_workflow_runs_in_comfyui(server, object_info, path):
    prompt = _prompt(object_info, path)
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", _errors(entry)
    saves = [nid for nid, n in prompt.items() if n["class_type"] in ("SaveImage", "VHSSaveImageWithScores")]
    previews = [nid for nid, n in prompt.items() if n["class_type"] == "PreviewImage"]
    assert saves or previews
    for nid in saves:
        images = entry["outputs"][nid]["images"]
        assert len(images) == 1
        with Image.open(os.path.join(server.base, "output", images[0]["subfolder"], images[0]["filename"])) as im:
            assert im.size == (64, 64)
            if prompt[nid]["class_type"] == "VHSSaveImageWithScores":  # scores next to ComfyUI's own chunks
                assert im.text["prompt"] and im.text["vhs_n"] and im.text["vhs_verifier"]
                assert (im.text["vhs_width"], im.text["vhs_height"]) == ("64", "64")
    rankings = [n for nid, n in entry["outputs"].items() if prompt[nid]["class_type"] == "PreviewAny"]
    assert rankings and all("".join(r["text"]).startswith(("Best-of-", "budget ")) for r in rankings)


def test_a_model_that_is_not_installed_is_a_validation_error_naming_the_folder(server, object_info):
    prompt = _prompt(object_info, [p for p in workflow_files() if "VHS Best-of-9 at 1100 ms" in p][0])
    loader = [n for n in prompt.values() if n["class_type"] == "SanaSprintLoaderVHS"][0]
    loader["inputs"]["model_name"] = "Sana_Sprint_0.6B_1024px_diffusers"
    status, body = server.queue(prompt)
    assert status == 400, body
    errors = [e for n in body["node_errors"].values() for e in n["errors"]]
    text = json.dumps(errors)
    assert "is not installed" in text and "sana" in text and "huggingface-cli download" in text


@pytest.mark.parametrize("name,value", [("guidance", "nan"), ("max_timestep", "nan"), ("intermediate_timestep", "inf")])
def test_non_finite_settings_are_a_validation_error(server, object_info, name, value):
    prompt = _prompt(object_info, workflow_files()[0])
    sampler = [n for n in prompt.values() if n["class_type"] == "SanaSprintHiddenSamplerVHS"][0]
    sampler["inputs"][name] = value
    status, body = server.queue(prompt)
    assert status == 400 and name in json.dumps(body["node_errors"]), body


def test_bad_widget_value_is_a_validation_error(server, object_info):
    prompt = _prompt(object_info, workflow_files()[0])
    sampler = [n for n in prompt.values() if n["class_type"] == "SanaSprintHiddenSamplerVHS"][0]
    sampler["inputs"]["candidates"] = 0
    status, body = server.queue(prompt)
    assert status == 400
    errors = [e["type"] for n in body["node_errors"].values() for e in n["errors"]]
    assert "value_smaller_than_min" in errors


def test_runtime_error_reaches_the_ui_as_a_clear_message(server, object_info):
    prompt = _prompt(object_info, [p for p in workflow_files() if "VHS Best-of-4 at 550 ms" in p][0])
    sampler = [n for n in prompt.values() if n["class_type"] == "SanaSprintHiddenSamplerVHS"][0]
    sampler["inputs"]["layer"] = 2  # the embedded verifier reads another block
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "error"
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors and "differs from the block the connected verifier reads" in errors[0]["exception_message"]
    assert errors[0]["exception_type"].endswith("InputError")


def test_models_live_under_comfyui_model_management(server, object_info):
    """Our parts are ModelPatchers: ComfyUI loads them, frees them on request, and reloads them for the next run."""
    from tools.comfyui_server import post_json

    prompt = _prompt(object_info, [p for p in workflow_files() if "VHS Best-of-4 at 550 ms" in p][0])
    for node in prompt.values():  # a different seed, so nothing comes from ComfyUI's cache
        if "seed" in node["inputs"]:
            node["inputs"]["seed"] = 12345
    assert server.run(prompt)["status"]["status_str"] == "success"
    log = server.log()
    assert "Requested to load ManagedPart" in log and "loaded completely" in log
    status, _ = post_json(f"{server.url}/free", {"unload_models": True, "free_memory": True})
    assert status == 200
    for node in prompt.values():
        if "seed" in node["inputs"]:
            node["inputs"]["seed"] = 54321
    assert server.run(prompt)["status"]["status_str"] == "success", "models must reload after being freed"
    for node in prompt.values():  # and once more through POST /prompt with the memory options on
        if "weight_storage" in node["inputs"]:
            node["inputs"]["weight_storage"] = "fp8_e4m3fn"
        if "text_encoder" in node["inputs"]:
            node["inputs"]["text_encoder"] = "offload after encoding"
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", _errors(entry)
    assert "text_encoder moved to" in server.log()


def test_memory_options_under_comfyui_model_management(pack):
    """In ComfyUI's own model management (in process, --cpu): fp8 weight storage survives ComfyUI's loads, and
    'offload after encoding' hands the text encoder back right after the prompt is encoded, while 'keep loaded'
    leaves it to ComfyUI; "free models" unloads every part."""
    script = os.path.join(os.path.dirname(__file__), "comfy_inprocess.py")
    models = pack.host.search_paths("sana")[-1], pack.host.search_paths("vhs")[-1]  # the tiny models (conftest)
    out = subprocess.run([sys.executable, script, COMFY, *models], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    keep, offload = report["keep loaded"], report["offload after encoding"]
    assert keep["after_sampling"] == ["text_encoder", "transformer"]
    assert offload["after_sampling"] == ["transformer"]
    assert "text_encoder" not in offload["after_decode"] and {"llm", "vae"} <= set(offload["after_decode"])
    for r in (keep, offload):
        assert r["transformer_weight"] == r["llm_weight"] == "torch.float8_e4m3fn"
        assert r["image_ok"] and r["after_free"] == []
    # every load names the activation memory ComfyUI must free first, and a baseline verifier loads the DiT, the VAE
    # and its own parts in ONE request (so ComfyUI never unloads one to make room for the other)
    requests, expected = report["requests"], report["expected"]
    sampling = [r for r in requests if r["roles"] == ["transformer"]]
    assert sampling and sampling[-1]["memory_required"] == expected["prefix"] > 0
    assert {"roles": ["connector", "llm"], "memory_required": expected["verify"]} in requests
    assert {"roles": ["connector", "llm", "transformer", "vae", "vision_tower"], "memory_required": expected["clip"]} \
        in requests


def test_the_registry_archive_installs_and_runs_the_demo(packed_archive, tmp_path):
    """What `comfy node pack` builds, unpacked into a fresh ComfyUI's custom_nodes, imports and runs the demo workflow
    with no model installed."""
    import zipfile

    from comfy_cli.workflow_to_api import convert_ui_to_api

    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(packed_archive) as z:
        z.extractall(unpacked)
    with ComfyServer(COMFY, str(tmp_path / "base"), {}, pack=str(unpacked)) as server:
        assert not server.import_failures(), server.log()[-3000:]
        demo = workflow_files()[0]
        assert "01 Demo" in demo
        entry = server.run(convert_ui_to_api(load(demo), server.object_info()))
        assert entry["status"]["status_str"] == "success", _errors(entry)
        assert any(o.get("images") for o in entry["outputs"].values())


@pytest.mark.parametrize("name", ["vhs_1100ms_best_of_9.json", "mllm_clip_550ms_best_of_2.json",
                                  "vhs_budget_550ms.json", "vhs_cascade_best_of_9_clip_top_3.json"])
def test_a_workflow_saved_by_the_previous_version_passes_validation(server, object_info, name):
    """Loaded as users saved it with 0.1.0 (old link type names and all), converted as the frontend would, and queued:
    ComfyUI validates it against today's nodes without an error (the queued run is then cancelled)."""
    from comfy_cli.workflow_to_api import convert_ui_to_api

    from tools.comfyui_server import post_json

    previous = os.path.join(os.path.dirname(__file__), "data", "v0.1.0", name)
    status, body = server.queue(convert_ui_to_api(load(previous), object_info))
    post_json(f"{server.url}/interrupt", {})
    post_json(f"{server.url}/queue", {"clear": True})
    assert status == 200 and not body.get("node_errors"), body


def test_the_sampler_takes_comfyuis_core_noise(server, object_info):
    """A graph shares noise with other samplers: ComfyUI's own RandomNoise node feeds the sampler's noise input."""
    prompt = _prompt(object_info, workflow_files()[0])
    sampler_id = [nid for nid, n in prompt.items() if n["class_type"] == "SanaSprintHiddenSamplerVHS"][0]
    prompt["900"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}}
    prompt[sampler_id]["inputs"]["noise"] = ["900", 0]
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", _errors(entry)
