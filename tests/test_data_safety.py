"""The command lines never mix, drop or erase: a re-run with other inputs is refused (or, with --extend, only adds),
labels merge, bad arguments stop before anything is written, dead runs' leftovers are cleaned, files honour the umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import torch

from apps import geneval
from apps.training.__main__ import main as cli
from apps.training.data import CandidateDataset, generate_dataset
from conftest import GENEVAL, ROOT
from models import InputError, SanaSprint

PROMPTS = ["a red cube", "two green balls", "a blue cat left of a dog", "three yellow circles", "a purple square",
           "an orange triangle"]


@pytest.fixture(scope="module")
def model(bundle):
    return SanaSprint.from_pretrained(bundle["sana"], dtype="fp32")


def records(texts):
    return [{"prompt": p, "metadata": {}} for p in texts]


def make(model, out, texts, **kw):
    args = dict(layers=[1], candidates=2, height=64, width=64, prompts_per_shard=2)
    args.update(kw)
    return generate_dataset(model, records(texts), str(out), args.pop("layers"), args.pop("candidates"),
                            args.pop("height"), args.pop("width"), **args)


def contents(folder) -> dict[str, tuple[int, torch.Tensor]]:
    data = CandidateDataset(str(folder))
    return {r["id"]: (r["seed"], data.tensor(r["id"], "h1")) for r in data.rows}


@pytest.fixture(scope="module")
def reference(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "d"
    make(model, out, PROMPTS)
    return contents(out)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k][0] == b[k][0] and torch.equal(a[k][1], b[k][1]) for k in a)


@pytest.mark.parametrize("per_shard", [1, 3])
def test_a_resume_with_another_shard_size_neither_duplicates_nor_drops(model, reference, tmp_path, per_shard):
    calls = [0]

    def crash_after_two_prompts(_):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make(model, tmp_path / "d", PROMPTS, progress=crash_after_two_prompts)
    make(model, tmp_path / "d", PROMPTS, prompts_per_shard=per_shard)
    rows = CandidateDataset(str(tmp_path / "d")).rows
    assert len(rows) == len({r["id"] for r in rows}) == 2 * len(PROMPTS), "no duplicates, no gaps"
    assert same(contents(tmp_path / "d"), reference), "equal to an uninterrupted run"


def test_a_changed_prompt_list_is_refused_unless_extended(model, reference, tmp_path):
    out = tmp_path / "d"
    make(model, out, PROMPTS[:4])
    before = contents(out)
    with pytest.raises(InputError, match=r"prompts differ .* 1 of this folder's missing \(first: 'a red cube'\)"):
        make(model, out, PROMPTS[1:4])  # the first line deleted
    with pytest.raises(InputError, match=r"2 new \(first: 'a purple square'\).*--extend"):
        make(model, out, PROMPTS)
    assert same(contents(out), before), "a refused run changes nothing"
    make(model, out, PROMPTS[4:], extend=True)  # another file with only new prompts: added, nothing dropped
    after = contents(out)
    assert same({k: after[k] for k in before}, before) and len(after) == 2 * len(PROMPTS)
    assert same(after, reference), "content-keyed: the same candidates as a run over the whole list"
    with pytest.raises(InputError, match="other settings - candidates: this folder has 2, you asked 3"):
        make(model, out, PROMPTS, candidates=3)


def test_labels_merge_and_never_erase(model, tmp_path, caplog):
    caplog.set_level("INFO")
    out = tmp_path / "d"
    make(model, out, PROMPTS[:4])
    ids = sorted(CandidateDataset(str(out)).by_id)

    def labels_file(name, items):
        path = tmp_path / name
        path.write_text("".join(json.dumps({"id": k, "label": v}) + "\n" for k, v in items))
        return str(path)

    assert cli(["label", "--data", str(out), "--labels-file", labels_file("a.jsonl", [(k, "yes") for k in ids[:4]])]) == 0
    assert cli(["label", "--data", str(out), "--labels-file", labels_file("b.jsonl", [(k, "no") for k in ids[2:8]])]) == 0
    labels = CandidateDataset(str(out)).labels()
    assert labels == {**{k: True for k in ids[:4]}, **{k: False for k in ids[4:8]}}, "the second file only adds"
    assert "2 kept as they were (--replace to overwrite)" in caplog.text
    assert cli(["label", "--data", str(out), "--replace", "--labels-file", labels_file("c.jsonl", [(ids[0], "no")])]) == 0
    assert CandidateDataset(str(out)).labels()[ids[0]] is False
    caplog.clear()
    assert cli(["label", "--data", str(out), "--labels-file", labels_file("d.jsonl", [("p999_c000", "yes")])]) == 2
    assert "match none of the 8 candidates" in caplog.text
    assert len(CandidateDataset(str(out)).labels()) == 8, "a labels file that matches nothing erases nothing"


@pytest.mark.parametrize("args,message", [
    (["--prompts-per-shard", "0"], "must be at least 1"), (["--prompts-per-shard", "-1"], "must be at least 1"),
    (["--candidates", "0"], "must be at least 1"), (["--size", "33"], "multiple of 32"), (["--layers", "-1"], "0 or more"),
])
def test_bad_generate_arguments_stop_before_anything_is_written(bundle, tmp_path, capsys, args, message):
    (tmp_path / "p.txt").write_text("a cat\n")
    with pytest.raises(SystemExit) as e:
        cli(["generate", "--sana", bundle["sana"], "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "o"),
             "--layers", "1", "--device", "cpu", "--dtype", "fp32", *args])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unreadable_prompt_files_name_the_file_and_line(bundle, tmp_path, caplog):
    (tmp_path / "latin1.txt").write_bytes("a cat\na café\n".encode("latin-1"))
    assert cli(["generate", "--sana", bundle["sana"], "--prompts", str(tmp_path / "latin1.txt"), "--out",
                str(tmp_path / "o"), "--layers", "1", "--device", "cpu", "--dtype", "fp32"]) == 2
    assert "latin1.txt:2: not UTF-8 text (byte 0xe9 at column 6)" in caplog.text and not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):
        geneval.main(["--prompts", GENEVAL, "--out", str(tmp_path / "g"), "--limit", "-1"])
    assert not (tmp_path / "g").exists()


def test_a_size_the_model_cannot_draw_writes_nothing(model, tmp_path):
    with pytest.raises(InputError, match="multiple of"):
        make(model, tmp_path / "d", PROMPTS[:1], height=48, width=48)  # a multiple of 16, not of 32
    assert not (tmp_path / "d").exists()
    make(model, tmp_path / "d", PROMPTS[:1])  # the corrected re-run is not blocked by a manifest
    assert len(CandidateDataset(str(tmp_path / "d")).rows) == 2


def test_geneval_refuses_to_mix_runs_and_extends_at_the_end(sana, hidden_verifier, res, tmp_path):
    from apps.prompts import read_prompts

    recs = read_prompts(GENEVAL)[:3]
    out = str(tmp_path / "g")
    geneval.run(sana, hidden_verifier, recs[:2], out, n=2, seed=42, height=res, width=res)
    before = sorted(os.listdir(out))
    for kwargs, message in (({"n": 3}, "n: this folder has 2, you asked 3"), ({"seed": 7}, "seed: this folder has 42")):
        with pytest.raises(InputError, match=message):
            geneval.run(sana, hidden_verifier, recs[:2], out, **{"n": 2, "seed": 42, **kwargs}, height=res, width=res)
    with pytest.raises(InputError, match="1 new"):
        geneval.run(sana, hidden_verifier, recs, out, n=2, seed=42, height=res, width=res)
    assert sorted(os.listdir(out)) == before, "nothing mixed in"
    with pytest.raises(InputError, match="reorders"):
        geneval.run(sana, hidden_verifier, [recs[1], recs[0], recs[2]], out, n=2, seed=42, height=res, width=res,
                    extend=True)
    summary = geneval.run(sana, hidden_verifier, recs, out, n=2, seed=42, height=res, width=res, extend=True)
    assert summary["generated"] == 1 and sorted(os.listdir(out)) == ["00000", "00001", "00002", "run.json"]


def test_a_killed_runs_leftovers_are_removed_and_a_live_ones_kept(sana, hidden_verifier, res, tmp_path):
    import socket

    from apps.prompts import read_prompts

    out = tmp_path / "g"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    stale = out / f".partial-{host}-{int(dead.stdout)}-abc"
    (stale / "samples").mkdir(parents=True)
    (stale / "metadata.jsonl").write_text("")
    live = out / f".partial-{host}-{os.getpid()}-def"
    live.mkdir()
    other_machine = out / ".partial-elsewhere-1-ghi"
    other_machine.mkdir()
    geneval.run(sana, hidden_verifier, read_prompts(GENEVAL)[:1], str(out), n=2, height=res, width=res)
    assert not stale.exists() and live.exists() and other_machine.exists()


def test_files_and_folders_honour_the_umask(model, hidden_verifier, sana, res, tmp_path):
    from apps.prompts import read_prompts

    old = os.umask(0o022)
    try:
        make(model, tmp_path / "d", PROMPTS[:2])
        geneval.run(sana, hidden_verifier, read_prompts(GENEVAL)[:1], str(tmp_path / "g"), n=2, height=res, width=res)
        hidden_verifier.save_pretrained(str(tmp_path / "v"))
    finally:
        os.umask(old)
    for root in (tmp_path / "d", tmp_path / "g", tmp_path / "v"):
        for dirpath, dirnames, filenames in os.walk(root):
            assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o755, dirpath
            for name in filenames:
                assert stat.S_IMODE(os.stat(os.path.join(dirpath, name)).st_mode) == 0o644, os.path.join(dirpath, name)


def test_atomic_writes_work_with_relative_paths(tmp_path, monkeypatch):
    """A file written atomically under a relative folder lands there, whole, with the umask's permissions."""
    from models.io import write_text_atomic

    monkeypatch.chdir(tmp_path)
    os.makedirs("a/b")
    old = os.umask(0o022)
    try:
        write_text_atomic(os.path.join("a", "b", "r.json"), "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "b" / "r.json").read_text() == "{}" and not list((tmp_path / "a" / "b").glob("*.partial"))
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "b" / "r.json").st_mode) == 0o644


def test_every_output_folder_says_what_made_it(model, tmp_path):
    make(model, tmp_path / "d", PROMPTS[:2], model_path=None)
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert set(manifest) == {"settings", "prompts", "code"} and manifest["code"]
    assert [p["prompt"] for p in manifest["prompts"]] == PROMPTS[:2] and all(p["id"].startswith("p") for p in
                                                                              manifest["prompts"])
    assert {"layers", "candidates", "height", "width", "steps", "seed", "model"} <= set(manifest["settings"])


def test_generate_cli_records_the_models_fingerprint(bundle, tmp_path):
    (tmp_path / "p.txt").write_text("a cat\n")
    assert cli(["generate", "--sana", bundle["sana"], "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "o"),
                "--layers", "1", "--candidates", "2", "--size", "64", "--device", "cpu", "--dtype", "fp32"]) == 0
    settings = json.loads((tmp_path / "o" / "manifest.json").read_text())["settings"]
    assert settings["model"]["name"] == os.path.basename(bundle["sana"]) and len(settings["model"]["fingerprint"]) == 16
    assert ROOT
