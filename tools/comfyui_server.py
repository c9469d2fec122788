"""Start a real ComfyUI headless on the CPU with this pack installed, for tests and the canvas check.

ComfyUI's own tree is never modified: custom_nodes/, input/, output/, temp/ and user/ live in a scratch
base directory (--base-directory), the pack is linked there as custom_nodes/sana-sprint-best-of-n (the name users get),
and model folders reach ComfyUI through an extra_model_paths.yaml, as users configure shared model folders.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACK_DIR_NAME = "sana-sprint-best-of-n"  # the folder the registry (and the README) install into


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def post_json(url: str, payload: dict, timeout: float = 30) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class ComfyServer:
    """A running ComfyUI process; use as a context manager or call stop()."""

    def __init__(self, comfyui: str, base: str, models: dict[str, dict[str, str]], settings: dict | None = None,
                 startup_timeout: float = 180, pack: str = ROOT, other_packs: list[str] = ()):
        if not os.path.isfile(os.path.join(comfyui, "main.py")):
            raise FileNotFoundError(f"{comfyui} is not a ComfyUI checkout (no main.py)")
        self.comfyui, self.base = comfyui, base
        for d in ("custom_nodes", "input", "output", "temp", "user/default", "models"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        link = os.path.join(base, "custom_nodes", PACK_DIR_NAME)  # this checkout, or an unpacked registry archive
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(pack), link)
        for other in other_packs:  # packs users have beside ours (e.g. ComfyUI-VideoHelperSuite), for side-by-side checks
            dst = os.path.join(base, "custom_nodes", os.path.basename(os.path.normpath(other)))
            if not os.path.lexists(dst):
                os.symlink(os.path.abspath(other), dst)
        if settings:
            with open(os.path.join(base, "user", "default", "comfy.settings.json"), "w", encoding="utf-8") as f:
                json.dump(settings, f)
        # models: {"sana": {"Sana_Sprint_1.6B_1024px_diffusers": "/abs/folder"}, "vhs": {...}}
        model_root = os.path.join(base, "linked_models")
        lines = ["vhs_models:", f"    base_path: {model_root}"]
        for folder, entries in models.items():
            os.makedirs(os.path.join(model_root, folder), exist_ok=True)
            for name, target in entries.items():
                dst = os.path.join(model_root, folder, name)
                if not os.path.islink(dst):
                    os.symlink(os.path.abspath(target), dst)
            lines.append(f"    {folder}: {folder}")
        self.yaml = os.path.join(base, "extra_model_paths.yaml")
        with open(self.yaml, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(base, "comfyui.log")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("VHS_MODELS_DIR", None)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                 "--base-directory", base, "--extra-model-paths-config", self.yaml,
                 "--database-url", "sqlite:///:memory:", "--disable-auto-launch"],
                cwd=comfyui, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._wait(startup_timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                get_json(f"{self.url}/system_stats", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"ComfyUI did not answer in {timeout} s:\n{self.log()[-4000:]}")
                time.sleep(0.5)

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def import_failures(self) -> list[str]:
        """ComfyUI's own 'IMPORT FAILED' lines for this pack (--quick-test-for-ci would still exit 0)."""
        return [line for line in self.log().splitlines() if "IMPORT FAILED" in line and PACK_DIR_NAME in line]

    def object_info(self) -> dict:
        return get_json(f"{self.url}/object_info", timeout=60)

    def queue(self, prompt: dict) -> tuple[int, dict]:
        return post_json(f"{self.url}/prompt", {"prompt": prompt, "client_id": "vhs"})

    def run(self, prompt: dict, timeout: float = 240) -> dict:
        """Queue an API prompt and wait for its history entry."""
        status, body = self.queue(prompt)
        if status != 200:
            raise AssertionError(f"prompt rejected: {json.dumps(body)[:2000]}")
        pid = body["prompt_id"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            hist = get_json(f"{self.url}/history/{pid}")
            if pid in hist and hist[pid].get("status", {}).get("status_str") in ("success", "error"):
                return hist[pid]
            time.sleep(0.25)
        raise TimeoutError(f"prompt {pid} did not finish in {timeout} s\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def __enter__(self) -> "ComfyServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
