"""The ShapeWorld benchmark: Best-of-N with VHS against the pixel-space verifiers, in a miniature world with an exact
judge and a clean protocol. One command regenerates everything (the shipped models and embedded/RESULTS.md):

    python -m apps.shapeworld.benchmark --work out/shapeworld --ship embedded     # about 90 min on 2 CPU cores

Steps, each resumable (a re-run skips what is finished in --work):
1. Generator: the ShapeWorld SANA-Sprint, trained on the train + validation prompts (apps.shapeworld.train), unless
   --generator.
2. Judge audit: the judge's verdicts against the known truth of teacher scenes, crisp and through this generator's
   DC-AE (apps.shapeworld.audit).
3. CLIP tower: pretrained on the whole grammar's scenes, crisp and round-tripped (apps.shapeworld.tower), then frozen.
4. Data: the training split (verifiers learn from it) and the validation split (every choice is made on it; every
   candidate block stored), labelled by the judge.
5. Verifiers: each kind gets a grid of the same size (12 configurations), the same data, stages, steps and
   checkpoints: VHS (block x learning rate), MLLM w/ CLIP (tower layer x connector x learning rate), MLLM w/ AE
   (connector x learning rate). Each kind's configuration is chosen on validation; the loss ablation runs at VHS's
   choice. Then each kind's chosen configuration trains again, longer and on more data (--long-repeats seed sets per
   training prompt, --long-steps), the same for every kind; each kind's final checkpoint is chosen on validation
   among its grid and long-run checkpoints.
6. Test: the test and compositional splits, generated only now, scored once by the chosen verifiers.
7. Report: results.json, RESULTS.md and plots in --work; --ship copies the models and the report.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, replace

import torch

from apps.cli import at_least, positive_int
from apps.fixtures import build_tiny_llm
from apps.runs import check_or_record
from apps.training.data import CandidateDataset, generate_dataset
from apps.training.judges import apply_captioner, apply_judge, prompt_captioner
from apps.training.train import TrainConfig, checkpoints, load_checkpoint_weights, stored_candidate_features, train
from models.budget import best_of_1_ms, measure_costs
from models.flops import max_candidates_in, pipeline_flops
from models.io import write_text_atomic
from models.sana_sprint import SanaSprint
from models.verifier import VHSVerifier

from . import protocol, shapeworld_judge
from .audit import judge_audit
from .report import write_report
from .world import split_prompts

logger = logging.getLogger(__name__)
LAYERS = (1, 3, 5, 7)
LEARNING_RATES = (3e-4, 1e-3, 3e-3)
VALIDATION_NS = (4, 9, 16)  # the validation objective: mean GenEval-overall Best-of-N accuracy at these N
TEST_NS = (1, 2, 4, 9, 15, 16, 32, 64)
KINDS = {"vhs": "hidden", "mllm_clip": "clip", "mllm_ae": "latent"}
SHIP = {"vhs": "vhs_hidden_shapeworld", "mllm_clip": "vhs_clip_shapeworld", "mllm_ae": "vhs_ae_shapeworld"}
LARGEST_N = "the largest Best-of-N measured: a seed set must hold it"
PAPER_MULTIPLES = {550: 2.75, 1100: 5.5, 1650: 8.25}  # the paper's budgets over its ~200 ms Best-of-1


# ------------------------------------------------------------------ 5. the grid
def grid(size: str = "full") -> list[dict]:
    """Every verifier configuration trained: 12 per kind ("full"), or the first of each kind ("one", a smoke run)."""
    out = [{"name": f"vhs_l{layer}_lr{lr:g}", "pipeline": "vhs", "layer": layer, "connector": "mlp2x_gelu", "lr": lr}
           for layer in LAYERS for lr in LEARNING_RATES]
    out += [{"name": f"clip_t{-select}_{conn.split('_')[0]}_lr{lr:g}", "pipeline": "mllm_clip", "select_layer": select,
             "connector": conn, "lr": lr}
            for select in (-2, -1) for conn in ("mlp2x_gelu", "mlp3x_gelu") for lr in LEARNING_RATES]
    out += [{"name": f"ae_{conn.split('_')[0]}_lr{lr:g}", "pipeline": "mllm_ae", "connector": conn, "lr": lr}
            for conn in ("linear", "mlp2x_gelu", "mlp3x_gelu", "mlp4x_gelu") for lr in LEARNING_RATES]
    out = [{"loss": "weighted", **c} for c in out]
    return out if size == "full" else [next(c for c in out if c["pipeline"] == p) for p in KINDS]


def _align_key(config: dict) -> str:
    """Stage 1 does not depend on the learning rate or loss of stage 2: configurations share it."""
    parts = [config["pipeline"], str(config.get("layer", "")), str(config.get("select_layer", "")), config["connector"]]
    return "_".join(p for p in parts if p).replace("-", "m")


def _new_verifier(config: dict, data: CandidateDataset, llm: str, tower: str) -> VHSVerifier:
    kind = KINDS[config["pipeline"]]
    first = data.rows[0]["id"]
    mm = {"hidden": lambda: int(data.tensor(first, f"h{config.get('layer')}").shape[-1]),
          "latent": lambda: int(data.tensor(first, "latent").shape[0]), "clip": lambda: 0}[kind]()
    verifier = VHSVerifier.from_llm(llm, kind, mm, layer=config.get("layer"), projector_type=config["connector"],
                                    vision_tower_path=tower if kind == "clip" else None, seed=0)
    if kind == "hidden":  # per-position standardisation, as the released verifiers (statistics from training data)
        verifier.spec = replace(verifier.spec, normalize=True)
    if kind == "clip":
        verifier.spec = replace(verifier.spec, select_layer=config["select_layer"])
        verifier.clip.select_layer = config["select_layer"]
    return verifier


def choose(configs: list[dict], validation: dict) -> dict:
    """Each kind's best configuration and checkpoint by the validation objective, among `configs`."""
    out = {}
    for pipe in KINDS:
        candidates = [(v["objective"], c["name"], step) for c in configs if c["pipeline"] == pipe
                      for step, v in validation[c["name"]].items()]
        objective, name, step = max(candidates)
        out[pipe] = {"config": next(c for c in configs if c["name"] == name), "step": int(step),
                     "validation_objective": objective}
    return out


def train_config(config: dict, data: CandidateDataset, llm: str, tower: str, work: str, steps: dict) -> str:
    """Stage 1 (shared) and stage 2 of one configuration, with checkpoints; returns the stage-2 folder. A folder made
    with other settings (steps, learning rate, data...) is refused, never reused as if it were this run."""
    align = os.path.join(work, "verifiers", "align_" + _align_key(config))
    common = dict(batch_size=steps["batch"], holdout=0.0, seed=0)
    align_cfg = TrainConfig(stage="align", out=align, max_steps=steps["align"], lr=2e-3, **common)
    _check_run(align_cfg, {k: v for k, v in config.items() if k not in ("name", "lr", "loss")}, None)
    if not os.path.isdir(os.path.join(align, "verifier")):
        train(_new_verifier(config, data, llm, tower), data, align_cfg)
    out = os.path.join(work, "verifiers", config["name"])
    cfg = TrainConfig(stage="finetune", out=out, max_steps=steps["finetune"], lr=config["lr"], warmup_steps=20,
                      loss=config["loss"], checkpoint_every=max(1, steps["finetune"] // steps.get("checkpoints", 4)),
                      **common)
    _check_run(cfg, {k: v for k, v in config.items() if k != "name"}, data)
    if not os.path.isdir(os.path.join(out, "verifier")):
        train(VHSVerifier.from_pretrained(os.path.join(align, "verifier")), data, cfg)
    return out


def _check_run(cfg: TrainConfig, config: dict, data: CandidateDataset | None) -> None:
    """Record what a run folder is asked to hold (run.json), or refuse if it was made with anything else."""
    settings = {**{k: v for k, v in asdict(cfg).items() if k != "out"}, "configuration": config}
    if data is not None:
        settings["data"] = os.path.basename(os.path.normpath(data.folder))
    check_or_record(cfg.out, "run.json", settings, [])


def score(verifier: VHSVerifier, data: CandidateDataset) -> dict[str, float]:
    """Normalised P(yes) of every candidate, one batched forward per seed set."""
    out: dict[str, float] = {}
    for _, cids in data.iter_prompts([r["id"] for r in data.rows]):
        feats = stored_candidate_features(verifier, data, cids)
        s = verifier.score_features(data.by_id[cids[0]]["prompt"], feats, mode="normalized")
        out.update(zip(cids, s.scores.tolist()))
    return out


def validation_objective(groups: list[protocol.Group], name: str) -> float:
    return sum(protocol.accuracy(groups, n, name)["verifier"] for n in VALIDATION_NS) / len(VALIDATION_NS)


def validate(run: str, data: CandidateDataset) -> dict:
    """The validation objective at every checkpoint of a stage-2 run (cached in the run's folder)."""
    cache = os.path.join(run, "validation.json")
    scored = {"data": os.path.abspath(data.folder), "candidates": sorted(r["id"] for r in data.rows)}
    if os.path.isfile(cache):
        with open(cache, encoding="utf-8") as f:
            cached = json.load(f)
        if cached.get("scored") == scored:  # the same candidates: reuse; anything else is scored again
            return cached["result"]
    verifier = VHSVerifier.from_pretrained(os.path.join(run, "verifier"))
    labels = data.labels()
    result = {}
    for ckpt in checkpoints(run):
        step = load_checkpoint_weights(verifier, ckpt)
        groups = protocol.groups_from(data.rows, labels, {"v": score(verifier, data)})
        result[str(step)] = {"objective": validation_objective(groups, "v"),
                             "auroc": protocol.within_prompt_auroc(groups, "v")["overall"]}
    write_text_atomic(cache, json.dumps({"scored": scored, "result": result}))
    return result


def _validated(work: str, name: str) -> bool:
    """Whether the run `name` in `work` is trained and validated (a resumed benchmark skips it)."""
    return os.path.isfile(os.path.join(work, "verifiers", name, "validation.json"))


def _grid_job(job: tuple) -> tuple[str, str, dict]:
    """One configuration in a worker process of one torch thread: train (resumable), then validate."""
    config, train_dir, val_dir, llm, tower, work, steps = job
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    run = train_config(config, CandidateDataset(train_dir), llm, tower, work, steps)
    return config["name"], run, validate(run, CandidateDataset(val_dir))


def run_grid(configs: list[dict], train_dir: str, val_dir: str, llm: str, tower: str, work: str, steps: dict,
             workers: int) -> dict[str, tuple[str, dict]]:
    """Train and validate every configuration: {name: (stage-2 folder, validation)}. With workers > 1, in that many
    processes of one thread each (tiny models use one core poorly); the configurations that first need a shared
    stage-1 alignment run before those that reuse it, so no two processes ever train the same alignment."""
    first, rest, keys = [], [], set()
    for config in configs:
        (rest if _align_key(config) in keys else first).append(config)
        keys.add(_align_key(config))
    out = {}
    for wave in (first, rest):
        jobs = [(c, train_dir, val_dir, llm, tower, work, steps) for c in wave]
        if workers <= 1:
            results = list(map(_grid_job, jobs))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = list(pool.map(_grid_job, jobs))
        for name, run, validation in results:
            out[name] = (run, validation)
            logger.info("%s: validation %s", name, {k: round(v["objective"], 3) for k, v in validation.items()})
    return out


def chosen(run: str, step: str, dest: str) -> str:
    """The verifier of `run` at checkpoint `step`, saved whole to `dest` (what the test and the ship use)."""
    if not os.path.isdir(dest):
        verifier = VHSVerifier.from_pretrained(os.path.join(run, "verifier"))
        load_checkpoint_weights(verifier, os.path.join(run, "checkpoints", f"step_{int(step):07d}"))
        verifier.save_pretrained(dest)
    return dest


# ------------------------------------------------------------------ 4 and 6. data
def dataset(model: SanaSprint, prompts: list[dict], repeats: int, k: int, layers, out: str, seed: int,
            generator_path: str) -> CandidateDataset:
    """`repeats` seed sets of `k` candidates per prompt, generated and judged (resumable)."""
    records = [{"prompt": p["prompt"], "metadata": {"tag": p["tag"], "include": p["include"]}}
               for _ in range(repeats) for p in prompts]
    generate_dataset(model, records, out, layers, k, 64, 64, seed=seed, prompts_per_shard=16, save_images=True,
                     model_path=generator_path)
    data = CandidateDataset(out)
    if len(data.labels()) < len(data.rows):
        counts = apply_judge(data, shapeworld_judge())
        apply_captioner(data, prompt_captioner, fill_only=True)
        logger.info("%s: %s", out, counts)
    return data


def _positive_rate(data: CandidateDataset) -> float:
    labels = data.labels()
    return sum(labels.values()) / len(labels)


# ------------------------------------------------------------------ 6. the test
def evaluate(groups: list[protocol.Group], names: dict[str, str], reps: int) -> dict:
    """Everything measured on one test split for the chosen verifiers (names: pipeline -> verifier key)."""
    out: dict = {"curves": {}, "per_category": {}, "auroc": {}, "headroom": {}, "ci": {}}
    for pipe, name in names.items():
        out["curves"][pipe] = {n: protocol.accuracy(groups, n, name) for n in range(1, 65)}
        out["per_category"][pipe] = {tag: {n: protocol.accuracy(gs, n, name) for n in (1, 4, 9, 16, 64)}
                                     for tag, gs in protocol.by_tag(groups).items()}
        out["auroc"][pipe] = protocol.within_prompt_auroc(groups, name)
        out["headroom"][pipe] = {n: protocol.headroom(out["curves"][pipe][n]) for n in (4, 9, 16, 64)}
        for n in (4, 9, 16):
            out["ci"][f"{pipe}@{n}"] = protocol.clustered_bootstrap(
                groups, lambda gs, n=n, name=name: protocol.accuracy(gs, n, name)["verifier"], reps)
            out["ci"][f"{pipe}@{n}_headroom"] = protocol.clustered_bootstrap(
                groups, lambda gs, n=n, name=name: protocol.headroom(protocol.accuracy(gs, n, name)) or 0.0, reps)
    out["ci"]["best_of_1"] = protocol.clustered_bootstrap(
        groups, lambda gs: protocol.accuracy(gs, 1, names["vhs"])["random"], reps)
    for other in ("mllm_clip", "mllm_ae"):
        for n in (4, 9, 16):
            out["ci"][f"vhs-{other}@{n}"] = protocol.clustered_bootstrap(
                groups, lambda gs, n=n, other=other: protocol.accuracy(gs, n, names["vhs"])["verifier"]
                - protocol.accuracy(gs, n, names[other])["verifier"], reps)
    return out


def budgets(groups: list[protocol.Group], names: dict[str, str], flops: dict, costs: dict, b1_ms: float,
            reps: int) -> dict:
    """Each pipeline's largest N (at most 64) within the paper's budgets, as multiples of Best-of-1: in FLOPs
    (primary: load-independent) and in measured time on this machine (secondary); accuracy there, with CIs."""
    out = {"flops": [], "time": []}
    for paper_ms, mult in PAPER_MULTIPLES.items():
        frow = {"paper_budget_ms": paper_ms, "multiple": mult, "budget_gflop": flops["best_of_1"] * mult / 1e9}
        trow = {"paper_budget_ms": paper_ms, "multiple": mult, "budget_ms": b1_ms * mult}
        for pipe, name in names.items():
            n_f = max(1, max_candidates_in(flops, pipe, flops["best_of_1"] * mult, 64))
            n_t = max(1, min(64, costs[pipe].max_candidates(b1_ms * mult)))
            for row, n in ((frow, n_f), (trow, n_t)):
                est, low, high = protocol.clustered_bootstrap(
                    groups, lambda gs, n=n, name=name: protocol.accuracy(gs, n, name)["verifier"], reps)
                row[pipe] = {"n": n, "accuracy": est, "ci": [low, high]}
        out["flops"].append(frow)
        out["time"].append(trow)
    return out


STEPS = ("generator", "judge audit", "CLIP tower", "training and validation data", "verifier grid, loss ablation",
         "longer training", "test splits")  # what the report's time line names, in this order


class StepClock:
    """How long each step took when it was computed, kept in --work/timings.json across resumed invocations (a re-run
    that reuses finished steps must not pass its own few minutes off as the cost of the results)."""

    def __init__(self, work: str):
        self.file = os.path.join(work, "timings.json")
        self.minutes: dict[str, float] = {}
        if os.path.isfile(self.file):
            with open(self.file, encoding="utf-8") as f:
                self.minutes = json.load(f)
        self.start = self.last = time.time()
        self.computed: list[str] = []

    def lap(self, step: str | None, computed: bool = False) -> None:
        """End `step` (one of STEPS; None: time not counted); if it computed anything in this invocation, add its time
        to the step's record."""
        assert step is None or step in STEPS, step
        now = time.time()
        if computed:
            self.minutes[step] = self.minutes.get(step, 0.0) + (now - self.last) / 60
            self.computed.append(step)
            write_text_atomic(self.file, json.dumps(self.minutes, indent=2))
        self.last = now

    def note_generator(self, folder: str) -> None:
        """A generator trained elsewhere: its time is the sum its own training.json records for its runs."""
        record = os.path.join(folder, "training.json")
        if "generator" not in self.minutes and os.path.isfile(record):
            with open(record, encoding="utf-8") as f:
                runs = json.load(f).get("runs", [])
            if runs and all(isinstance(r.get("minutes"), (int, float)) for r in runs):
                self.minutes["generator"] = float(sum(r["minutes"] for r in runs))

    def summary(self) -> dict:
        return {"order": list(STEPS), "steps": dict(self.minutes), "computed_now": list(self.computed),
                "this_invocation": (time.time() - self.start) / 60}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="models, datasets, verifier runs and results (resumable)")
    parser.add_argument("--generator", help="a trained ShapeWorld SANA-Sprint folder (default: train one in --work)")
    parser.add_argument("--ship", help="copy the generator, the chosen verifiers and the report here (e.g. embedded)")
    parser.add_argument("--train-repeats", type=positive_int, default=8, help="seed sets per training prompt")
    parser.add_argument("--train-k", type=positive_int, default=16, help="candidates per training seed set")
    parser.add_argument("--val-repeats", type=positive_int, default=4)
    parser.add_argument("--val-k", type=at_least(max(VALIDATION_NS), LARGEST_N), default=32, help="candidates per validation seed set")
    parser.add_argument("--test-repeats", type=positive_int, default=8, help="seed sets per test prompt")
    parser.add_argument("--test-k", type=at_least(max(TEST_NS), LARGEST_N), default=64, help="candidates per test seed set")
    parser.add_argument("--align-steps", type=positive_int, default=150)
    parser.add_argument("--finetune-steps", type=positive_int, default=800)
    parser.add_argument("--long-repeats", type=positive_int, default=32,
                        help="seed sets per training prompt for the longer training of each kind's chosen configuration")
    parser.add_argument("--long-steps", type=positive_int, default=6400,
                        help="fine-tuning steps of the longer training (8 checkpoints, each validated)")
    parser.add_argument("--batch", type=positive_int, default=16)
    parser.add_argument("--bootstrap", type=positive_int, default=1000, help="bootstrap replicates")
    parser.add_argument("--audit-draws", type=positive_int, default=2000)
    parser.add_argument("--tower-steps", type=positive_int, default=1500, help="CLIP tower pretraining steps")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--grid", choices=("full", "one"), default="full",
                        help="full: 12 configurations per verifier kind; one: the first of each (a smoke run)")
    parser.add_argument("--workers", type=positive_int, default=2,
                        help="processes (one thread each) that train the grid's configurations side by side")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    work = args.work
    os.makedirs(work, exist_ok=True)
    clock = StepClock(work)
    # 1. the generator
    generator = args.generator or os.path.join(work, "generator")
    if not os.path.isdir(generator):
        from .train import main as train_generator

        train_generator(["--out", generator])
        clock.lap("generator", computed=True)
    model = SanaSprint.from_pretrained(generator, dtype="fp32", device="cpu")
    clock.note_generator(generator)
    # 2. the judge audit
    audit_file = os.path.join(work, "judge_audit.json")
    if not os.path.isfile(audit_file):
        write_text_atomic(audit_file, json.dumps(judge_audit(model.pipe.vae, args.audit_draws), indent=2))
        clock.lap("judge audit", computed=True)
    with open(audit_file, encoding="utf-8") as f:
        audit = json.load(f)
    logger.info("judge agreement: crisp %.4f, round trip %.4f", audit["crisp"]["agreement"],
                audit["round_trip"]["agreement"])
    # 3. the CLIP tower, and the LLM every verifier starts from
    tower = os.path.join(work, "clip_tower")
    if not os.path.isdir(tower):
        from .tower import pretrain_clip_tower

        pretrain_clip_tower(tower, steps=args.tower_steps, batch=32, seed=0, vae=model.pipe.vae)
        clock.lap("CLIP tower", computed=True)
    llm = os.path.join(work, "llm")
    if not os.path.isdir(llm):
        build_tiny_llm(llm, hidden=64, layers=2)
    clock.lap(None)  # loading the LLM folder
    # 4. training and validation data
    splits = split_prompts()
    labelled = [os.path.isfile(os.path.join(work, d, "labels.jsonl")) for d in ("data_train", "data_validation")]
    train_data = dataset(model, splits.train, args.train_repeats, args.train_k, LAYERS,
                         os.path.join(work, "data_train"), seed=1, generator_path=generator)
    val_data = dataset(model, splits.validation, args.val_repeats, args.val_k, LAYERS,
                       os.path.join(work, "data_validation"), seed=2, generator_path=generator)
    clock.lap("training and validation data", computed=not all(labelled))
    # 5. the grid, chosen on validation
    steps = {"align": args.align_steps, "finetune": args.finetune_steps, "batch": args.batch}
    configs = grid(args.grid)
    grid_done = all(_validated(work, c["name"]) for c in configs)
    done = run_grid(configs, train_data.folder, val_data.folder, llm, tower, work, steps, args.workers)
    runs = {name: run for name, (run, _) in done.items()}
    validation = {name: v for name, (_, v) in done.items()}
    logger.info("grid trained and validated (%.0f min)", (time.time() - t0) / 60)
    grid_choice = choose(configs, validation)
    vhs_config = grid_choice["vhs"]["config"]
    losses = {"weighted": validation[vhs_config["name"]]}
    ablation = run_grid([{**vhs_config, "loss": loss, "name": f"{vhs_config['name']}_{loss}"} for loss in ("xe", "focal")],
                        train_data.folder, val_data.folder, llm, tower, work, steps, args.workers)
    losses.update({loss: ablation[f"{vhs_config['name']}_{loss}"][1] for loss in ("xe", "focal")})
    layer = vhs_config["layer"]
    clock.lap("verifier grid, loss ablation", computed=not grid_done)
    # 5b. longer training on more data: every kind's chosen configuration again, with the same data and steps
    long_data = dataset(model, splits.train, args.long_repeats, args.train_k, [layer],
                        os.path.join(work, "data_train_long"), seed=11, generator_path=generator)
    long_configs = [{**grid_choice[pipe]["config"], "name": grid_choice[pipe]["config"]["name"] + "_long"}
                    for pipe in KINDS]
    long_before = all(_validated(work, c["name"]) for c in long_configs)
    long_done = run_grid(long_configs, long_data.folder, val_data.folder, llm, tower, work,
                         {**steps, "finetune": args.long_steps, "checkpoints": 8}, args.workers)
    runs.update({name: run for name, (run, _) in long_done.items()})
    validation.update({name: v for name, (_, v) in long_done.items()})
    choice = choose(configs + long_configs, validation)
    paths = {pipe: chosen(runs[c["config"]["name"]], str(c["step"]),
                          os.path.join(work, "chosen", f"{c['config']['name']}_step{c['step']}"))
             for pipe, c in choice.items()}
    logger.info("chosen on validation: %s (%.0f min)", {p: (c["config"]["name"], c["step"]) for p, c in choice.items()},
                (time.time() - t0) / 60)
    clock.lap("longer training", computed=not long_before)
    tested = all(os.path.isfile(os.path.join(work, f"data_{s}", "labels.jsonl")) for s in ("test", "compositional"))
    # 6. the test and compositional splits, generated and scored once
    verifiers = {pipe: VHSVerifier.from_pretrained(path) for pipe, path in paths.items()}
    names = {pipe: pipe for pipe in verifiers}
    tests = {}
    for split, prompts, seed in (("test", splits.test, 3), ("compositional", splits.compositional, 4)):
        data = dataset(model, prompts, args.test_repeats, args.test_k, [layer], os.path.join(work, f"data_{split}"),
                       seed=seed, generator_path=generator)
        groups = protocol.groups_from(data.rows, data.labels(), {p: score(v, data) for p, v in verifiers.items()})
        tests[split] = {"prompts": len(prompts), "seed_sets": args.test_repeats, "k": args.test_k,
                        "candidates": len(data.rows), "positive_rate": _positive_rate(data),
                        **evaluate(groups, names, args.bootstrap)}
        if split == "test":
            test_groups = groups
    prompt = splits.test[0]["prompt"]
    flops = pipeline_flops(model, {KINDS[p]: v for p, v in verifiers.items()}, prompt, layer, 64, 64)
    last = model.num_layers - 1
    costs = {pipe: measure_costs(model, v, prompt, layer if pipe == "vhs" else last, 64, 64, repeats=5)
             for pipe, v in verifiers.items()}
    b1_ms = best_of_1_ms(model, prompt, 64, 64, repeats=5)
    clock.lap("test splits", computed=not tested)
    result = {
        "judge_audit": audit,
        "splits": {"train": {"prompts": len(splits.train), "candidates": len(train_data.rows),
                             "positive_rate": _positive_rate(train_data)},
                   "validation": {"prompts": len(splits.validation), "candidates": len(val_data.rows),
                                  "positive_rate": _positive_rate(val_data)},
                   "train_long": {"prompts": len(splits.train), "candidates": len(long_data.rows),
                                  "positive_rate": _positive_rate(long_data), "steps": args.long_steps}},
        "grid": configs, "long_runs": long_configs, "validation": validation, "grid_choice": grid_choice,
        "choice": choice, "loss_ablation": losses,
        "tests": tests, "flops": flops, "costs": {p: c.to_dict() for p, c in costs.items()}, "best_of_1_ms": b1_ms,
        "budgets": budgets(test_groups, names, flops, costs, b1_ms, args.bootstrap),
        "machine": f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "timings": clock.summary(), "settings": vars(args),
    }
    write_report(result, work)
    if args.ship:
        ship(args.ship, generator if not args.generator else None, paths, work)
    logger.info("done in %.0f min", (time.time() - t0) / 60)
    return result


def ship(dest: str, generator: str | None, paths: dict[str, str], work: str) -> None:
    """Copy the chosen verifiers (and a generator trained here) and the report into `dest` (e.g. embedded/)."""
    targets = {os.path.join(dest, SHIP[pipe]): path for pipe, path in paths.items()}
    if generator:
        targets[os.path.join(dest, "sana_sprint_shapeworld")] = generator
    for target, source in targets.items():
        if os.path.isdir(target):
            shutil.rmtree(target)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", "*.partial"))
    for name in ("RESULTS.md", "results.json", "accuracy_vs_budget.png", "accuracy_vs_n.png"):
        if os.path.isfile(os.path.join(work, name)):
            shutil.copy2(os.path.join(work, name), os.path.join(dest, name))
    logger.info("shipped to %s", dest)


if __name__ == "__main__":
    main()
