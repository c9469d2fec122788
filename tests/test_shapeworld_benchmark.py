"""The ShapeWorld benchmark end to end, at smoke size: one configuration per verifier kind, a few steps, the real
protocol (test seed sets of 64 candidates), on the shipped generator. What it checks is the plumbing a full run
relies on: choices made on validation, the test scored once, the report and the shipped folders."""

from __future__ import annotations

import json

import pytest

from models import VHSVerifier
from models.embedded import embedded_model
from apps.shapeworld import benchmark

SMOKE = ["--grid", "one", "--workers", "1", "--train-repeats", "1", "--train-k", "4", "--val-repeats", "1",
         "--val-k", "16", "--test-repeats", "1", "--test-k", "64", "--align-steps", "2", "--finetune-steps", "4",
         "--long-repeats", "1", "--long-steps", "8",
         "--batch", "4", "--bootstrap", "20", "--audit-draws", "20", "--tower-steps", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapeworld")
    result = benchmark.main(["--work", str(root / "work"), "--generator", embedded_model("sana"),
                             "--ship", str(root / "ship")] + SMOKE)
    return root, result


def test_a_smoke_run_makes_every_part_of_the_report(run):
    root, result = run
    text = (root / "work" / "RESULTS.md").read_text()
    for heading in ("## The judge", "## Test split", "## Matched budgets", "## Compositional test split",
                    "## Validation"):
        assert heading in text
    assert set(result["choice"]) == {"vhs", "mllm_clip", "mllm_ae"}
    assert set(result["loss_ablation"]) == {"weighted", "xe", "focal"}  # three runs, not one name for two
    # every kind trained longer at its grid choice, and the final choice is the best of grid and long run
    assert sorted(c["pipeline"] for c in result["long_runs"]) == sorted(["vhs", "mllm_clip", "mllm_ae"])
    for c in result["long_runs"]:
        assert c["name"] == result["grid_choice"][c["pipeline"]]["config"]["name"] + "_long"
        assert sorted(map(int, result["validation"][c["name"]])) == list(range(1, 9))  # 8 checkpoints
        final = result["choice"][c["pipeline"]]
        names = [c["name"], result["grid_choice"][c["pipeline"]]["config"]["name"]]
        assert final["validation_objective"] == max(v["objective"] for n in names
                                                    for v in result["validation"][n].values())
    assert "Longer training" in text
    test = result["tests"]["test"]
    assert test["k"] == 64 and test["candidates"] == 64 * test["prompts"]
    for pipe in ("vhs", "mllm_clip", "mllm_ae"):
        b4 = test["curves"][pipe][4]
        assert b4["random"] - 1e-9 <= b4["oracle"] and b4["verifier"] <= b4["oracle"] + 1e-9
        assert test["auroc"][pipe]["overall"] is None or 0 <= test["auroc"][pipe]["overall"] <= 1
    # the compositional prompts were never in training or validation
    train_prompts = {json.loads(line)["prompt"] for f in (root / "work" / "data_train").glob("shard_*.jsonl")
                     for line in f.read_text().splitlines()}
    comp = {json.loads(line)["prompt"] for f in (root / "work" / "data_compositional").glob("shard_*.jsonl")
            for line in f.read_text().splitlines()}
    assert comp and not comp & train_prompts
    assert (root / "work" / "accuracy_vs_budget.png").is_file()


def test_the_shipped_verifiers_are_the_chosen_ones_and_load(run):
    root, result = run
    for pipe, folder in benchmark.SHIP.items():
        verifier = VHSVerifier.from_pretrained(root / "ship" / folder)
        assert verifier.kind == benchmark.KINDS[pipe]
        if pipe == "vhs":
            assert verifier.spec.layer == result["choice"]["vhs"]["config"]["layer"]
    assert (root / "ship" / "RESULTS.md").read_text() == (root / "work" / "RESULTS.md").read_text()


def test_a_second_run_reuses_what_is_finished(run, caplog):
    root, result = run
    again = benchmark.main(["--work", str(root / "work"), "--generator", embedded_model("sana")] + SMOKE)
    assert again["choice"] == result["choice"] and again["validation"] == result["validation"]
    assert again["tests"]["test"]["curves"]["vhs"][9] == result["tests"]["test"]["curves"]["vhs"][9]
    # the report's step times are those recorded when each step was computed, not the re-run's own minutes
    assert again["timings"]["computed_now"] == [] and again["timings"]["steps"] == result["timings"]["steps"]
    assert set(result["timings"]["computed_now"]) >= {"judge audit", "verifier grid, loss ablation", "test splits"}
    assert "reused the finished steps" in (root / "work" / "RESULTS.md").read_text()


def test_a_cached_validation_is_reused_only_for_the_same_candidates(run):
    """A run's validation.json says which candidates it scored; a cache of other data is never taken as this one."""
    root, result = run
    name = result["choice"]["vhs"]["config"]["name"]
    folder = root / "work" / "verifiers" / name
    data = benchmark.CandidateDataset(str(root / "work" / "data_validation"))
    cache = json.loads((folder / "validation.json").read_text())
    cache["result"] = {"1": {"objective": -1.0, "auroc": -1.0}}
    (folder / "validation.json").write_text(json.dumps(cache))
    assert benchmark.validate(str(folder), data) == cache["result"]  # same candidates: the cache is used
    cache["scored"]["candidates"] = cache["scored"]["candidates"][1:]
    (folder / "validation.json").write_text(json.dumps(cache))
    assert benchmark.validate(str(folder), data) == result["validation"][name]  # other candidates: scored again


def test_a_seed_set_smaller_than_the_largest_n_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--work", str(tmp_path / "w"), "--test-k", "16"])
    assert "must be at least 64" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_a_run_folder_made_with_other_settings_is_refused_not_reused(run):
    """Asking for longer training in the same --work must not pass the finished shorter runs off as the longer ones."""
    from models.errors import InputError

    root, result = run
    longer = [a if a != "8" or SMOKE[i - 1] != "--long-steps" else "12" for i, a in enumerate(SMOKE)]
    assert longer != SMOKE
    with pytest.raises(InputError, match="max_steps: this folder has 8, you asked 12"):
        benchmark.main(["--work", str(root / "work"), "--generator", embedded_model("sana")] + longer)
    name = result["long_runs"][0]["name"]
    recorded = json.loads((root / "work" / "verifiers" / name / "run.json").read_text())
    assert recorded["settings"]["max_steps"] == 8 and recorded["settings"]["data"] == "data_train_long"
