"""Registry and Manager packaging: pyproject metadata, light requirements, comfy-cli's own validation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pyproject_has_registry_metadata_and_its_own_name():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        data = tomllib.load(f)
    project, comfy = data["project"], data["tool"]["comfy"]
    name = project["name"]
    assert "comfyui" not in name.lower() and project["version"].count(".") == 2 and project["dependencies"]
    assert not name.lower().startswith("vhs") and not comfy["DisplayName"].startswith("VHS"), \
        "ComfyUI-VideoHelperSuite is 'vhs' in ComfyUI-Manager: our name must not read as it"
    assert "SANA-Sprint" in comfy["DisplayName"] and "best-of-n" in name
    assert comfy["requires-comfyui"] == ">=0.3.64"  # the oldest ComfyUI the tests were run against
    assert "Operating System :: OS Independent" in project["classifiers"]
    for key, url in project.get("urls", {}).items():  # once published: the registry's own keys, real addresses
        assert key in {"Repository", "Documentation", "Issues", "Homepage"} and "comfyui-vhs/ComfyUI-VHS" not in url
    with open(os.path.join(ROOT, ".comfyignore")) as f:
        ignored = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    assert {"tests/", "bench/", ".ci/", "tools/", "docs/screenshots/"} <= ignored


def test_requirements_are_light_floors():
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        lines = [l.split("#")[0].strip() for l in f if l.split("#")[0].strip()]
    assert not any(l.split(">")[0].split("=")[0].strip() in {"torch", "torchvision", "torchaudio"} for l in lines)
    assert not any("==" in l for l in lines), "pins break other packs: use floors"
    assert not os.path.exists(os.path.join(ROOT, "install.py"))


def test_comfy_node_validate_passes():
    comfy = shutil.which("comfy", path=os.path.dirname(sys.executable)) or shutil.which("comfy")
    assert comfy, "comfy-cli is a test dependency (requirements-dev.txt)"
    env = dict(os.environ, DO_NOT_TRACK="1")
    subprocess.run([comfy, "--skip-prompt", "tracking", "disable"], cwd=ROOT, env=env, capture_output=True, timeout=120)
    out = subprocess.run([comfy, "--skip-prompt", "node", "validate"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and "passed" in out.stdout + out.stderr, out.stdout + out.stderr


def test_requirement_floors_match_what_the_library_checks():
    """requirements.txt, pyproject and the runtime check (models.errors.MINIMUM_VERSIONS) name the same floors."""
    from models.errors import MINIMUM_VERSIONS

    with open(os.path.join(ROOT, "requirements.txt")) as f:
        req = {l.split(">=")[0].strip(): l.split(">=")[1].strip() for l in f if ">=" in l}
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    pyproject = {d.split(">=")[0].strip(): d.split(">=")[1].strip() for d in deps if ">=" in d}
    for package, minimum in MINIMUM_VERSIONS.items():
        assert req[package] == pyproject[package] == minimum, package


def test_comfy_node_pack_builds_an_archive_of_the_pack_only(packed_archive):
    """`comfy node pack` (the registry's archive) carries the pack, its workflows, help pages and the embedded demo
    models - and none of the development files."""
    import zipfile

    with zipfile.ZipFile(packed_archive) as z:
        names = set(z.namelist())
    for needed in ("__init__.py", "nodes/__init__.py", "models/sana_sprint.py", "pyproject.toml", "requirements.txt",
                   "web/docs/VHSVerifier.md", "embedded/sana_sprint_shapeworld/model_index.json", "demo.py"):
        assert needed in names, needed
    assert any(n.startswith("workflows/01 Demo") and n.endswith(".json") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "bench/", ".ci/", "tools/", "docs/screenshots/"))]
