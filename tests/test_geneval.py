"""Best-of-N over GenEval prompts in GenEval's folder layout: files, resume, parts, atomic folders, input errors."""

from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from conftest import GENEVAL
from apps import geneval
from models import InputError
from apps.prompts import read_prompts


@pytest.fixture(scope="module")
def records():
    return read_prompts(GENEVAL)[:3]


def test_writes_genevals_layout_with_the_k_best(sana, hidden_verifier, records, res, tmp_path):
    summary = geneval.run(sana, hidden_verifier, records, str(tmp_path), n=3, keep=2, height=res, width=res)
    assert summary["generated"] == 3 and summary["skipped"] == 0
    with open(GENEVAL, encoding="utf-8") as f:
        source = [json.loads(line) for line in f if line.strip()][:3]
    for i, original in enumerate(source):
        folder = tmp_path / f"{i:05d}"
        assert json.loads((folder / "metadata.jsonl").read_text()) == original
        assert sorted(os.listdir(folder / "samples")) == ["0000.png", "0001.png"]
        with Image.open(folder / "samples" / "0000.png") as im:
            assert im.size == (res, res)
        info = json.loads((folder / "vhs.json").read_text())
        assert info["seeds"] == [42 + 3 * i, 43 + 3 * i, 44 + 3 * i]
        best = max(range(3), key=lambda j: info["scores"][j])
        assert info["winners"][0] == best and info["winner_scores"][0] == pytest.approx(info["scores"][best])
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".partial")]


def test_resume_skips_finished_prompts_and_parts_split_the_set(sana, hidden_verifier, records, res, tmp_path,
                                                               monkeypatch):
    assert geneval.part_indices(7, 0, 2) == [0, 2, 4, 6] and geneval.part_indices(7, 1, 2) == [1, 3, 5]
    first = geneval.run(sana, hidden_verifier, records, str(tmp_path), n=2, height=res, width=res, part=0, parts=2)
    assert first["generated"] == 2 and sorted(os.listdir(tmp_path)) == ["00000", "00002", "run.json"]
    calls = []
    real = sana.prefix
    monkeypatch.setattr(sana, "prefix", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = geneval.run(sana, hidden_verifier, records, str(tmp_path), n=2, height=res, width=res)
    assert (again["generated"], again["skipped"], len(calls)) == (1, 2, 1)
    assert sorted(os.listdir(tmp_path)) == ["00000", "00001", "00002", "run.json"]


def test_an_interrupted_prompt_leaves_nothing_behind(sana, hidden_verifier, records, res, tmp_path, monkeypatch):
    def broken_decode(latents):
        raise KeyboardInterrupt

    monkeypatch.setattr(sana, "decode", broken_decode)
    with pytest.raises(KeyboardInterrupt):
        geneval.run(sana, hidden_verifier, records, str(tmp_path), n=2, height=res, width=res)
    assert os.listdir(tmp_path) == ["run.json"]


def test_bad_requests_are_clear_errors(sana, hidden_verifier, records, res, tmp_path):
    for kwargs, message in (({"n": 0}, "--n must be between"), ({"n": 2, "keep": 3}, "--keep must be between"),
                            ({"part": 2, "parts": 2}, "--part must be between"), ({"mode": "best"}, "score mode")):
        with pytest.raises(InputError, match=message):
            geneval.run(sana, hidden_verifier, records, str(tmp_path), height=res, width=res, **kwargs)
    assert geneval.main(["--prompts", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")]) == 2


def test_cli_on_the_embedded_models(tmp_path):
    assert geneval.main(["--prompts", GENEVAL, "--out", str(tmp_path), "--n", "2", "--limit", "2"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["00000", "00001", "run.json"]
