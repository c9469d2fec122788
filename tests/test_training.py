"""Verifier training on the tiny fixtures: generate -> label -> align -> finetune -> evaluate, losses, resume, DDP."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from math import comb

import pytest
import torch

from conftest import ROOT
from models import InputError, VHSVerifier
from apps.fixtures import build_tiny_llm
from apps.training.__main__ import main as cli
from apps.prompts import read_prompts
from apps.training.data import CandidateDataset, generate_dataset
from apps.training.evaluate import auroc, best_of_n
from apps.training.train import answer_loss, class_weights

PROMPTS = ["a red circle", "a blue square", "two green triangles", "a red circle left of a blue square",
           "three yellow circles", "a purple square above a red circle"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, bundle):
    """A labelled tiny dataset and a plain tiny LLM, shared by the tests below."""
    root = tmp_path_factory.mktemp("train")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p, "tag": "shapes", "index": i}) + "\n" for i, p in enumerate(PROMPTS)))
    assert cli(["generate", "--sana", bundle["sana"], "--prompts", str(prompts), "--out", str(root / "data"),
                "--layers", "1", "2", "--candidates", "4", "--size", "64", "--prompts-per-shard", "4",
                "--save-images", "--dtype", "fp32", "--device", "cpu"]) == 0
    data = CandidateDataset(str(root / "data"))
    # labels from a rule on the image (bright red channel = "yes"), so they depend on the candidate, both classes
    labels = {r["id"]: bool(data.tensor(r["id"], "image")[0].float().mean() > data.tensor(r["id"], "image")[2].float().mean())
              for r in data.rows}
    if len(set(labels.values())) < 2:
        labels = {cid: i % 3 != 0 for i, cid in enumerate(sorted(labels))}
    (root / "labels.jsonl").write_text("".join(json.dumps({"id": k, "label": "yes" if v else "no"}) + "\n"
                                               for k, v in labels.items()))
    assert cli(["label", "--data", str(root / "data"), "--labels-file", str(root / "labels.jsonl")]) == 0
    build_tiny_llm(str(root / "llm"))
    return root


def test_dataset_layout_and_index(workdir):
    data = CandidateDataset(str(workdir / "data"))
    assert len(data.rows) == len(PROMPTS) * 4 and data.layers == [1, 2]
    row = next(r for r in data.rows if r["prompt"] == PROMPTS[1] and r["candidate"] == 1)
    assert row["metadata"] == {"tag": "shapes", "index": 1} and row["id"] == f"{row['prompt_id']}_c001"
    assert data.tensor(row["id"], "h1").shape == (256, 32) and data.tensor(row["id"], "latent").shape == (8, 16, 16)
    assert data.tensor(row["id"], "image").dtype == torch.uint8
    files = sorted(os.listdir(workdir / "data"))
    assert files[:3] == ["captions.jsonl", "labels.jsonl", "manifest.json"] and len(files) == 3 + 2 * 2
    assert all(f.startswith("shard_") and f.endswith((".jsonl", ".safetensors")) for f in files[3:])
    assert len(data.captions()) == len(data.rows) and set(data.labels()) == set(data.by_id)


@pytest.fixture(scope="module")
def trained(workdir):
    """Stage 1 then stage 2 through the command line, once for this module; returns the runs folder."""
    data, runs = str(workdir / "data"), workdir / "runs"
    assert cli(["align", "--data", data, "--llm", str(workdir / "llm"), "--layer", "1", "--out", str(runs / "align"),
                "--max-steps", "3", "--batch-size", "4", "--device", "cpu"]) == 0
    assert cli(["finetune", "--data", data, "--init", str(runs / "align" / "verifier"), "--out", str(runs / "ft"),
                "--max-steps", "4", "--batch-size", "4", "--lr", "1e-3", "--device", "cpu"]) == 0
    return runs


def test_end_to_end_align_finetune_evaluate(workdir, trained):
    data, runs = str(workdir / "data"), trained
    aligned = VHSVerifier.from_pretrained(runs / "align" / "verifier")
    assert aligned.spec.layer == 1 and aligned.hidden_features.mean.shape == (256,)
    summary = json.loads((runs / "ft" / "train_summary.json").read_text())
    assert summary["steps"] == 4 and summary["class_weights"]["yes"] + summary["class_weights"]["no"] == pytest.approx(1)
    assert cli(["evaluate", "--data", data, "--verifier", str(runs / "ft" / "verifier"), "--out",
                str(runs / "metrics.json")]) == 0
    metrics = json.loads((runs / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and set(metrics["best_of_n"]) == {"1", "2", "4", "9", "15"}
    b4 = metrics["best_of_n"]["4"]
    assert b4["random"] <= b4["oracle"] and b4["verifier"] <= b4["oracle"] + 1e-9


def test_the_trained_verifier_loads_in_the_loader_node_unchanged(trained, pack, tmp_path):
    import folder_paths

    (tmp_path / "vhs").mkdir()
    os.symlink(trained / "ft" / "verifier", tmp_path / "vhs" / "my-trained-verifier")
    folder_paths.add_model_folder_path("vhs", str(tmp_path / "vhs"))
    try:
        loaded = pack.run("VHSVerifierLoader", verifier_name="my-trained-verifier", dtype="fp32", device="cpu")[0]
    finally:
        folder_paths.folder_names_and_paths["vhs"][0].remove(str(tmp_path / "vhs"))
    assert loaded.verifier.kind == "hidden" and loaded.verifier.spec.layer == 1


def test_finetune_checkpoints_and_resumes(workdir):
    data, out = str(workdir / "data"), workdir / "runs" / "resume"
    assert cli(["align", "--data", data, "--llm", str(workdir / "llm"), "--layer", "2", "--out", str(workdir / "runs" / "a2"),
                "--max-steps", "1", "--device", "cpu"]) == 0
    args = ["finetune", "--data", data, "--init", str(workdir / "runs" / "a2" / "verifier"), "--out", str(out),
            "--checkpoint-every", "2", "--batch-size", "2", "--device", "cpu"]
    assert cli(args + ["--max-steps", "2"]) == 0
    assert os.path.isfile(out / "checkpoints" / "step_0000002" / "trainer_state.json")
    assert cli(args + ["--max-steps", "3"]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 3  # resumed at 2, ran one more
    # an intermediate checkpoint loads into the trained verifier, for checkpoint selection on validation
    from apps.training.train import checkpoints, load_checkpoint_weights

    assert [os.path.basename(c) for c in checkpoints(str(out))] == ["step_0000002"]
    umask = os.umask(0)
    os.umask(umask)
    assert {os.stat(f).st_mode & 0o777 for f in (out / "checkpoints" / "step_0000002").iterdir()} == {0o666 & ~umask}
    verifier = VHSVerifier.from_pretrained(out / "verifier")
    final = {k: v.clone() for k, v in verifier.llm.state_dict().items()}
    assert load_checkpoint_weights(verifier, checkpoints(str(out))[0]) == 2
    # the resumed step 3 trained: its rate follows this run's schedule, not the 2-step run's last rate (0)
    assert any(not torch.equal(final[k], v) for k, v in verifier.llm.state_dict().items())
    empty = workdir / "runs" / "not-a-checkpoint"
    empty.mkdir()
    with pytest.raises(InputError, match="not a complete checkpoint"):
        load_checkpoint_weights(verifier, str(empty))


def test_generation_resumes_and_never_leaves_a_complete_looking_partial_shard(bundle, tmp_path):
    from models import SanaSprint

    model = SanaSprint.from_pretrained(bundle["sana"], dtype="fp32")
    prompts = [{"prompt": p, "metadata": {}} for p in PROMPTS[:4]]
    calls = [0]

    def crash_in_second_shard(_):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_dataset(model, prompts, str(tmp_path / "d"), [1], 2, 64, 64, prompts_per_shard=2,
                         progress=crash_in_second_shard)
    files = sorted(os.listdir(tmp_path / "d"))
    assert len(files) == 3 and files[0] == "manifest.json" and {f.split(".")[-1] for f in files[1:]} == {
        "jsonl", "safetensors"}, "one complete shard, nothing of the interrupted one"
    assert len(generate_dataset(model, prompts, str(tmp_path / "d"), [1], 2, 64, 64, prompts_per_shard=2)) == 1
    generate_dataset(model, prompts, str(tmp_path / "ref"), [1], 2, 64, 64, prompts_per_shard=2)
    a, b = CandidateDataset(str(tmp_path / "d")), CandidateDataset(str(tmp_path / "ref"))
    assert [r["id"] for r in a.rows] == [r["id"] for r in b.rows]
    assert all(torch.equal(a.tensor(r["id"], "h1"), b.tensor(r["id"], "h1")) for r in a.rows)
    with pytest.raises(InputError, match="other settings"):
        generate_dataset(model, prompts, str(tmp_path / "d"), [1, 2], 2, 64, 64, prompts_per_shard=2)


def test_weighted_xe_reweights_by_the_label_balance():
    labels = [True, True, True, False]  # 75% positives, as the paper's 63% skew
    w_yes, w_no = class_weights(labels)
    assert (w_yes, w_no) == (0.25, 0.75)
    logits = torch.zeros(4, 10)
    logits[:3, 1] = 2.0  # the yes-candidates put some mass on token 1 (yes)
    logits[3, 2] = -1.0  # the no-candidate is less sure of token 2 (no)
    targets = torch.tensor([1, 1, 1, 2])
    is_yes = torch.tensor(labels)
    ce = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    weighted = answer_loss(logits, targets, is_yes, "weighted", (w_yes, w_no))
    assert weighted.item() == pytest.approx((ce[0] + ce[3]).item() / 2)  # each class counts half
    assert answer_loss(logits, targets, is_yes, "xe").item() == pytest.approx(ce.mean().item())
    assert weighted > answer_loss(logits, targets, is_yes, "xe")  # the rare, worse-fit class now weighs more
    focal = answer_loss(logits, targets, is_yes, "focal", (w_yes, w_no), gamma=2.0)
    assert focal < weighted  # focal down-weights what is already fit
    with pytest.raises(InputError, match="all yes"):
        class_weights([True, True])


def test_best_of_n_is_exact():
    scores, labels = [0.9, 0.1, 0.5, 0.7, 0.3], [False, True, True, False, True]
    for n in (1, 2, 3, 5):
        subsets = list(itertools.combinations(range(5), n))
        brute = sum(labels[max(s, key=lambda i: scores[i])] for s in subsets) / comb(5, n)
        oracle = sum(any(labels[i] for i in s) for s in subsets) / comb(5, n)
        r = best_of_n([(scores, labels)], n)
        assert r["verifier"] == pytest.approx(brute) and r["oracle"] == pytest.approx(oracle)
        assert r["random"] == pytest.approx(3 / 5)
    assert best_of_n([(scores, labels)], 6) is None
    assert auroc([0.9, 0.8, 0.1], [True, True, False]) == 1.0 and auroc([0.5, 0.5], [True, False]) == 0.5
    assert auroc([1.0], [True]) is None


def test_cli_errors_are_clear(bundle, tmp_path, caplog):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{not json}\n')
    assert cli(["generate", "--sana", bundle["sana"], "--prompts", str(bad), "--out", str(tmp_path / "x"),
                "--layers", "1", "--device", "cpu", "--dtype", "fp32"]) == 2
    assert "bad.jsonl:2: not valid JSON" in caplog.text
    (tmp_path / "empty.txt").write_text("\n\n")
    assert cli(["generate", "--sana", bundle["sana"], "--prompts", str(tmp_path / "empty.txt"), "--out",
                str(tmp_path / "y"), "--layers", "1", "--device", "cpu", "--dtype", "fp32"]) == 2
    assert "holds no prompts" in caplog.text
    (tmp_path / "p.txt").write_text("a cat\n")
    assert cli(["generate", "--sana", bundle["sana"], "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "z"),
                "--layers", "9", "--device", "cpu", "--dtype", "fp32"]) == 2
    assert "layers [9] out of range" in caplog.text
    (tmp_path / "empty_ds").mkdir()
    (tmp_path / "empty_ds" / "manifest.json").write_text("{}")
    assert cli(["evaluate", "--data", str(tmp_path / "empty_ds"), "--verifier", bundle["hidden"], "--out",
                str(tmp_path / "m.json")]) == 2
    assert "dataset is empty" in caplog.text
    assert read_prompts.__doc__


def test_help_explains_each_subcommand(capsys):
    for command in ("generate", "label", "align", "finetune", "evaluate"):
        with pytest.raises(SystemExit):
            cli([command, "--help"])
        assert "usage: python -m apps.training " + command in capsys.readouterr().out


def test_two_process_cpu_run_under_accelerate(workdir):
    """DDP with the gloo backend on two CPU processes: both see half the batches, one verifier is written."""
    out = workdir / "runs" / "ddp"
    init = workdir / "runs" / "align" / "verifier"
    if not init.exists():
        pytest.fail("run after test_end_to_end_align_finetune_evaluate (module order)")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "apps.training", "finetune", "--data",
           str(workdir / "data"), "--init", str(init), "--out", str(out), "--max-steps", "2", "--batch-size", "2"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2
    assert VHSVerifier.from_pretrained(out / "verifier").kind == "hidden"


def test_generation_splits_shards_between_processes(bundle, tmp_path):
    from models import SanaSprint

    model = SanaSprint.from_pretrained(bundle["sana"], dtype="fp32")
    prompts = [{"prompt": p, "metadata": {}} for p in PROMPTS]
    out = str(tmp_path / "d")
    a = generate_dataset(model, prompts, out, [1], 1, 64, 64, prompts_per_shard=2, part=0, parts=2)
    b = generate_dataset(model, prompts, out, [1], 1, 64, 64, prompts_per_shard=2, part=1, parts=2)
    assert a and b and not set(a) & set(b), "each process writes its own shards"
    rows = CandidateDataset(out).rows
    assert len(rows) == len(PROMPTS) and sorted(r["prompt"] for r in rows) == sorted(PROMPTS)
    assert generate_dataset(model, prompts, out, [1], 1, 64, 64, prompts_per_shard=2) == [], "nothing is left to do"
