"""The committee: members as complete runs on one split, the combination against a hand calculation and
against the members' own predictions, the test split scored once per member and once for the committee,
resume, several processes, and a committee as a run everywhere (load_run, evaluate, serve, export, report)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import mnistlab
from conftest import tiny_mlp_config
from mnistlab.config import TrainConfig
from mnistlab.data import load_dataset, split_train_val
from mnistlab.errors import ConfigError, RunError
from mnistlab.models import Committee
from mnistlab.runs import read_config
from mnistlab.training.trainer import Splits

MEMBERS = 3


def committee_config(out: Path) -> TrainConfig:
    """Three tiny MLPs (64 hidden) on 2,000 distorted real MNIST images, 2 epochs, one thread each."""
    cfg = tiny_mlp_config(out)
    cfg.members, cfg.epochs, cfg.threads = MEMBERS, 2, 1
    cfg.augment.kind = "both"
    return cfg


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    """The committee trained once, with every scoring of the test split recorded: (Run, calls)."""
    calls: list[tuple[str, int]] = []
    real = Splits.score_test

    def spy(self, model, *args, **kwargs):
        calls.append((type(model).__name__, len(self.test)))
        return real(self, model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Splits, "score_test", spy)
        run = mnistlab.train(committee_config(tmp_path_factory.mktemp("committee") / "run"))
    return run, calls


def raw_splits(config: TrainConfig) -> dict[str, tuple[np.ndarray, torch.Tensor]]:
    """Raw uint8 validation and test images with labels, split by hand from the split seed."""
    arrays = load_dataset(config.data.dataset, progress=False)
    _, val_idx = split_train_val(60_000, config.data.val_size, config.data.split_seed)
    test = (arrays.test_images, torch.from_numpy(arrays.test_labels).long())
    val = (
        arrays.train_images[val_idx.numpy()],
        torch.from_numpy(arrays.train_labels[val_idx.numpy()]).long(),
    )
    return {"val": val, "test": test}


# ---- the combination, by hand -----------------------------------------------------------------------------
class Fixed(torch.nn.Module):
    """A member that answers the same logits (B, 10) whatever its input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits)
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[: x.shape[0]]


def test_mean_rule_is_the_log_of_the_averaged_softmax():
    members = [
        Fixed(torch.tensor([[2.0, 0.0, -1.0, 0, 0, 0, 0, 0, 0, 0]])),
        Fixed(torch.tensor([[0.0, 3.0, 0.0, 0, 0, 0, 0, 0, 0, 1]])),
        Fixed(torch.tensor([[0.0, 0.0, 0.0, 0, 0, 0, 0, 0, 0, 0]])),
    ]
    committee = Committee(members)
    x = torch.zeros(1, 1, 28, 28)
    expected = torch.stack([torch.softmax(m(x), 1) for m in members]).mean(0)  # (1, 10)
    got = torch.softmax(committee(x), 1)
    torch.testing.assert_close(got, expected)
    assert committee(x).argmax(1).item() == 1  # member 2's confident 1 outweighs member 1's 0


def test_vote_counts_heads_and_breaks_ties_by_the_mean():
    # three members vote 3, 3, 5; the 5-voter is so sure that the mean probability favours 5
    sure_5 = [0.0] * 10
    sure_5[5] = 20.0
    weak_3 = [0.0] * 10
    weak_3[3], weak_3[5] = 1.0, 0.9
    members = [Fixed(torch.tensor([weak_3])), Fixed(torch.tensor([weak_3])), Fixed(torch.tensor([sure_5]))]
    x = torch.zeros(1, 1, 28, 28)
    assert Committee(members, "vote")(x).argmax(1).item() == 3
    assert Committee(members, "mean")(x).argmax(1).item() == 5
    # two members, one vote each: the tie goes to the digit with the higher mean probability (5)
    tie = Committee([Fixed(torch.tensor([weak_3])), Fixed(torch.tensor([sure_5]))], "vote")(x)
    assert tie.argmax(1).item() == 5
    torch.testing.assert_close(torch.softmax(tie, 1).sum(), torch.tensor(1.0))


def test_unknown_rule_is_a_config_error():
    with pytest.raises(ConfigError, match="combination rule"):
        Committee([Fixed(torch.zeros(1, 10))], "median")


# ---- recipes and flags --------------------------------------------------------------------------------------
def test_members_alone_uses_the_committee_recipe_and_model_x_its_long_recipe():
    from mnistlab.cli.config_options import config_from_flags
    from mnistlab.recipes import COMMITTEE_MODEL, LONG_RECIPES, recipe

    alone = config_from_flags({"members": 4})
    assert (alone.model.name, alone.members) == (COMMITTEE_MODEL, 4)
    assert alone.augment.kind != "none" and alone.epochs > recipe(COMMITTEE_MODEL).epochs
    wide = config_from_flags({"members": 3, "model.name": "lenet-wide"})
    assert wide.to_dict() == (LONG_RECIPES["lenet-wide"]().to_dict() | {"members": 3})
    cnn = config_from_flags({"members": 2, "model.name": "cnn"})  # no long recipe: the ordinary one
    assert cnn.to_dict() == (recipe("cnn").to_dict() | {"members": 2})
    single = config_from_flags({"model.name": "lenet-wide"})
    assert single.to_dict() == recipe("lenet-wide").to_dict()  # one run: the ordinary recipe
    assert mnistlab.recipe("committee").members >= 5


# ---- the committee run -------------------------------------------------------------------------------------
def test_each_member_is_a_complete_run_with_its_own_seed_on_one_split(committee):
    run, _ = committee
    folder = run.path
    assert read_config(folder).members == MEMBERS
    states = []
    for k in range(MEMBERS):
        member = mnistlab.load_run(folder / "members" / str(k))
        assert {"config.json", "metrics.jsonl", "model.safetensors", "summary.json"} <= {
            p.name for p in member.path.iterdir()
        }
        assert (member.config.seed, member.config.data.split_seed, member.config.members) == (k, 0, 1)
        assert len(member.history) == 2 and member.summary["test_images"] == 10_000
        torch.testing.assert_close(member.preprocessor.mean, run.preprocessor.mean, rtol=0, atol=0)
        states.append(member.model.state_dict())
    first = next(iter(states[0]))
    assert not torch.equal(states[0][first], states[1][first])  # own initial weights, order, distortions


def test_summary_matches_the_members_own_predictions(committee):
    run, _ = committee
    s = run.summary
    members = [mnistlab.load_run(run.path / "members" / str(k)) for k in range(MEMBERS)]
    raw = raw_splits(members[0].config)
    member_probs = {
        name: torch.stack([m.predict(torch.from_numpy(images)) for m in members])
        for name, (images, _) in raw.items()
    }
    for name, (_, labels) in raw.items():
        averaged = member_probs[name].mean(0)  # the rule, written out: mean of the softmax outputs
        assert s[f"{name}_accuracy"] == pytest.approx((averaged.argmax(1) == labels).double().mean().item())
    test_labels = raw["test"][1]
    wrong = member_probs["test"].argmax(2) != test_labels  # (M, 10000)
    assert s["test_errors_shared_by_all_members"] == int(wrong.all(0).sum())
    assert s["test_errors_of_any_member"] == int(wrong.any(0).sum())
    assert 0 < s["test_errors_shared_by_all_members"] < s["test_errors"] < s["test_errors_of_any_member"]
    tests = [m.summary["test_accuracy"] for m in members]
    assert [r["test_accuracy"] for r in s["member_runs"]] == tests
    assert [r["val_accuracy"] for r in s["member_runs"]] == [m.summary["best_val_accuracy"] for m in members]
    assert s["member_test_accuracy"]["mean"] == pytest.approx(statistics.fmean(tests))
    assert s["member_test_accuracy"]["std"] == pytest.approx(statistics.stdev(tests))
    assert (s["combine"], s["members"], s["kind"]) == ("mean", MEMBERS, "committee")


def test_the_test_split_is_scored_once_per_member_and_once_for_the_committee(committee):
    _, calls = committee
    assert calls == [("MLP", 10_000)] * MEMBERS + [("Committee", 10_000)]


def test_a_committee_loads_as_a_run_everywhere(committee, tmp_path):
    run, _ = committee
    loaded = mnistlab.load_run(run.path)
    assert isinstance(loaded.model, Committee) and len(loaded.model.members) == MEMBERS
    assert loaded.evaluate()["accuracy"] == run.summary["test_accuracy"]
    images = torch.from_numpy(load_dataset("mnist", progress=False).test_images[:50])
    members = [mnistlab.load_run(run.path / "members" / str(k)) for k in range(MEMBERS)]
    expected = torch.stack([m.predict(images) for m in members]).mean(0)
    torch.testing.assert_close(loaded.predict(images), expected, atol=1e-6, rtol=1e-5)
    combined, votes = loaded.predict_with_members(images)
    torch.testing.assert_close(combined, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(votes, torch.stack([m.predict(images) for m in members]), atol=1e-6, rtol=1e-5)
    as_numpy = loaded.predict_with_members(images.numpy())  # NumPy in, NumPy out, the same figures
    assert all(isinstance(a, np.ndarray) for a in as_numpy)
    np.testing.assert_allclose(as_numpy[1], votes.numpy(), atol=1e-6)


def test_serving_a_committee_shows_each_members_vote(committee):
    run, _ = committee
    loaded = mnistlab.load_run(run.path)
    digit = load_dataset("mnist", progress=False).test_images[0]
    with TestClient(_app(loaded)) as client:
        info = client.get("/api/model").json()
        body = client.post("/api/predict", json={"pixels": digit.tolist(), "normalize": False}).json()
    assert (info["members"], info["combine"]) == (MEMBERS, "mean")
    _, votes = loaded.predict_with_members(torch.from_numpy(digit[None]))
    assert [m["label"] for m in body["members"]] == votes[:, 0].argmax(1).tolist()
    assert [m["probability"] for m in body["members"]] == pytest.approx(votes[:, 0].max(1).values.tolist())
    assert body["label"] == int(np.argmax(body["probabilities"]))


def _app(run):
    from mnistlab.app.server import create_app

    return create_app(run)


def test_exporting_a_committee_averages_the_members_in_one_graph(committee, tmp_path):
    from mnistlab.app.export import MAX_LOGIT_DIFF, VERIFY_IMAGES, export_run

    run, _ = committee
    report = export_run(mnistlab.load_run(run.path), "onnx", tmp_path / "committee.onnx")
    assert report.images == VERIFY_IMAGES and report.argmax_agree == VERIFY_IMAGES
    assert report.max_abs_logit_diff <= MAX_LOGIT_DIFF
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "committee.onnx"), providers=["CPUExecutionProvider"])
    pixels = load_dataset("mnist", progress=False).test_images[:20].astype(np.float32)
    logits = session.run(["logits"], {"pixels": pixels})[0]
    members = [mnistlab.load_run(run.path / "members" / str(k)) for k in range(MEMBERS)]
    expected = torch.stack([m.predict(torch.from_numpy(pixels)) for m in members]).mean(0)
    np.testing.assert_allclose(
        torch.softmax(torch.from_numpy(logits), 1).numpy(), expected.numpy(), atol=1e-5
    )


def test_the_report_of_a_committee_lists_its_members(committee, tmp_path):
    from mnistlab.evaluation.report import run_report

    run, _ = committee
    html = run_report(run.path, out=tmp_path / "report").read_text()
    assert "The committee and its members" in html and "member 2 (seed 2)" in html
    assert "Member 0 of the committee." in html  # its learning curves: the first member's steps
    assert (tmp_path / "report" / "learning_curves.png").is_file()
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["test_accuracy"] == run.summary["test_accuracy"]


def test_evaluate_command_accepts_a_committee(committee):
    run, _ = committee
    out = subprocess.run(
        [sys.executable, "-m", "mnistlab", "evaluate", str(run.path), "--json"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["accuracy"] == run.summary["test_accuracy"]


# ---- resume -------------------------------------------------------------------------------------------------
def test_resume_skips_complete_members_resumes_the_interrupted_and_starts_the_missing(
    committee, tmp_path, interrupted_in_epoch, monkeypatch
):
    reference, _ = committee
    cfg = committee_config(tmp_path / "run")
    with interrupted_in_epoch(4):  # member 0: epochs 1-2, member 1: epoch 1, then Ctrl-C in its epoch 2
        mnistlab.train(cfg)
    members = Path(cfg.out) / "members"
    assert (members / "0" / "summary.json").is_file() and (members / "1" / "last.safetensors").is_file()
    assert not (members / "2").exists() and not (Path(cfg.out) / "summary.json").exists()
    with pytest.raises(RunError, match="incomplete"):
        mnistlab.load_run(cfg.out)

    from mnistlab.training import trainer as trainer_module

    epochs = []
    real = trainer_module.train_one_epoch
    monkeypatch.setattr(trainer_module, "train_one_epoch", lambda *a, **k: epochs.append(1) or real(*a, **k))
    resumed = mnistlab.train(resume=cfg.out)
    assert len(epochs) == 3  # member 1's epoch 2, member 2's epochs 1-2; member 0 untouched
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    timings = {"wall_seconds", "environment", "train_seconds"}

    def untimed(summary: dict) -> dict:
        rows = [{k: v for k, v in r.items() if k not in timings} for r in summary["member_runs"]]
        return {k: v for k, v in summary.items() if k not in timings} | {"member_runs": rows}

    assert untimed(resumed.summary) == untimed(reference.summary)
    with pytest.raises(RunError, match="already completed"):
        mnistlab.train(resume=cfg.out)


def test_a_completed_committee_grows_into_the_one_trained_at_once(committee, tmp_path):
    """`--resume RUN --members 3` on a complete committee of 2: member 2 is trained, members 0-1 are not
    touched, and the result is the committee trained with --members 3 from the start."""
    reference, _ = committee
    cfg = committee_config(tmp_path / "run")
    cfg.members = 2
    small = mnistlab.train(cfg)
    members = Path(cfg.out) / "members"
    untouched = {k: (members / k / "model.safetensors").stat().st_mtime_ns for k in ("0", "1")}
    older = members / "0" / "summary.json"  # as if member 0 had been trained by an earlier commit
    summary = json.loads(older.read_text())
    summary["environment"]["git_commit"] = "0" * 40
    older.write_text(json.dumps(summary))
    grown = mnistlab.train(_with_members(cfg.out, MEMBERS), resume=cfg.out)
    rows = grown.summary["member_runs"]
    assert [rows[0]["git_commit"], rows[2]["git_commit"]] == [
        "0" * 40,
        grown.summary["environment"]["git_commit"],
    ]
    assert {k: (members / k / "model.safetensors").stat().st_mtime_ns for k in ("0", "1")} == untouched
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(grown.model.state_dict()[name], tensor), name
    assert grown.summary["members"] == MEMBERS
    assert grown.summary["test_accuracy"] == reference.summary["test_accuracy"]
    assert grown.summary["member_runs"][2]["seed"] == cfg.seed + 2
    earlier = json.loads((Path(cfg.out) / "summary-2-members.json").read_text())
    assert earlier["members"] == 2 and earlier["test_accuracy"] == small.summary["test_accuracy"]
    assert read_config(cfg.out).members == MEMBERS
    with pytest.raises(RunError, match="already completed"):
        mnistlab.train(resume=cfg.out)
    for fewer in (2, 1):
        with pytest.raises(ConfigError, match=r"grow, not shrink|needs --members >= 2"):
            mnistlab.train(_with_members(cfg.out, fewer), resume=cfg.out)


def _with_members(folder: str | Path, members: int) -> TrainConfig:
    config = read_config(folder)
    config.members = members
    return config


# ---- several processes --------------------------------------------------------------------------------------
def test_nproc_2_trains_the_same_members_as_one_process(committee, tmp_path):
    """`mnistlab train --members 3 --nproc 2` under torchrun (gloo): members 0 and 2 on rank 0, member 1 on
    rank 1, each trained whole; the members and the committee are bit-identical to one process's."""
    reference, _ = committee
    out = tmp_path / "two"
    args = [
        "--model",
        "mlp",
        "--hidden",
        "64",
        "--train-subset",
        "2000",
        "--val-size",
        "1000",
        "--epochs",
        "2",
    ]
    args += ["--augment", "both", "--members", "3", "--threads", "1", "--quiet", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "mnistlab", "train", *args, "--nproc", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_config(out).to_dict() | {"out": None} == reference.config.to_dict() | {"out": None}
    two = mnistlab.load_run(out)
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(two.model.state_dict()[name], tensor), name
    assert two.summary["test_accuracy"] == reference.summary["test_accuracy"]
    world = [
        json.loads((out / "members" / str(k) / "summary.json").read_text())["environment"] for k in range(3)
    ]
    assert all(w["world_size"] == 1 for w in world)  # each member trained alone: no gradient averaging


def test_resume_at_once_falls_back_to_one_at_a_time_when_members_stopped_at_different_epochs(
    committee, tmp_path, interrupted_in_epoch
):
    """Member 1 stopped after epoch 1 and member 2 never started: they cannot share grouped steps, so they
    are trained one after another, and come out as the one-process committee's (bit for bit)."""
    reference, _ = committee
    cfg = committee_config(tmp_path / "run")
    with interrupted_in_epoch(4):
        mnistlab.train(cfg)
    config = read_config(cfg.out)
    config.members_at_once = 2  # resume-safe: how to train, not what
    resumed = mnistlab.train(config, resume=cfg.out)
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name


# ---- mnistlab lab committee ---------------------------------------------------------------------------------
def test_lab_analysis_against_the_summaries(committee):
    from mnistlab.lab.committee import analyse

    run, _ = committee
    result = analyse(run)
    s = run.summary
    members = [mnistlab.load_run(run.path / "members" / str(k)) for k in range(MEMBERS)]
    by_size = result["accuracy_by_size"]
    assert by_size["test"][-1] == pytest.approx(s["test_accuracy"]) and len(by_size["test"]) == MEMBERS
    assert by_size["val"][-1] == pytest.approx(s["val_accuracy"])
    assert by_size["test"][0] == pytest.approx(members[0].summary["test_accuracy"])  # size 1: member 0
    assert by_size["val"][0] == pytest.approx(members[0].summary["best_val_accuracy"])
    overlap = np.array(result["error_overlap"])
    errors = [round(10_000 * (1 - m.summary["test_accuracy"])) for m in members]
    assert overlap.diagonal().tolist() == errors and (overlap == overlap.T).all()
    assert all(overlap[i, j] >= s["test_errors_shared_by_all_members"] for i in range(3) for j in range(3))
    assert result["committee_test_errors"] == s["test_errors"]
    labels = load_dataset("mnist", progress=False).test_labels
    for row in result["gallery"]:
        assert row["true"] == labels[row["index"]] and len(row["votes"]) == MEMBERS


def test_lab_committee_writes_its_figures(tmp_path, monkeypatch):
    from mnistlab.lab import LabOptions, run_experiment
    from mnistlab.lab import committee as lab

    real = lab.settings
    monkeypatch.setattr(lab, "settings", lambda quick: real(quick) | {"model": "mlp", "train_subset": 300})
    run_experiment("committee", LabOptions(quick=True, out=tmp_path / "lab", threads=1))
    out = tmp_path / "lab"
    for name in ("accuracy_by_size.png", "error_overlap.png", "committee_mistakes.png", "report.html"):
        assert (out / name).stat().st_size > 1000, name
    results = json.loads((out / "results.json").read_text())
    assert len(results["accuracy_by_size"]["test"]) == 3 and results["order"] == "member index"
    assert json.loads((out / "committee" / "summary.json").read_text())["members"] == 3


# ---- a committee of several models (--member-models) -------------------------------------------------------
def mixed_config(out: Path) -> TrainConfig:
    """An mlp and a cnn taking turns: 3 members on 2,000 images, 4 steps an epoch, one thread."""
    cfg = tiny_mlp_config(out)
    cfg.members, cfg.member_models, cfg.threads, cfg.max_steps = 3, ("mlp", "cnn"), 1, 4
    return cfg


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return mnistlab.train(mixed_config(tmp_path_factory.mktemp("mixed") / "run"))


def test_a_committee_of_two_models_gives_each_member_its_own_models_recipe(mixed, tmp_path):
    from mnistlab.recipes import long_recipe

    run, cfg = mixed, mixed_config(tmp_path / "unused")
    configs = [read_config(run.path / "members" / str(k)) for k in range(3)]
    assert [c.model.name for c in configs] == ["mlp", "cnn", "mlp"]
    assert [c.seed for c in configs] == [0, 1, 2] and {c.data.split_seed for c in configs} == {0}
    # member 1 trains the cnn's own recipe (its optimiser: SGD at 0.1, not the mlp's Adam) with the
    # committee's own changes to its first model's recipe (1 epoch instead of the mlp's 5; hidden 64)
    assert configs[1].optim == long_recipe("cnn").optim and configs[1].optim != cfg.optim
    assert (configs[1].epochs, configs[1].model.hidden) == (1, (64,))
    assert configs[0].optim == cfg.optim and configs[0].model == cfg.model
    s = run.summary
    assert s["member_models"] == ["mlp", "cnn"]
    assert [r["model"] for r in s["member_runs"]] == ["mlp", "cnn", "mlp"]
    # loaded from its files, it is the mean of its three different members
    loaded = mnistlab.load_run(run.path)
    assert [type(m).__name__ for m in loaded.model.members] == [
        type(mnistlab.load_run(run.path / "members" / str(k)).model).__name__ for k in range(3)
    ]
    images = torch.from_numpy(load_dataset("mnist", progress=False).test_images[:50])
    members = [mnistlab.load_run(run.path / "members" / str(k)) for k in range(3)]
    expected = torch.stack([m.predict(images) for m in members]).mean(0)
    torch.testing.assert_close(loaded.predict(images), expected, atol=1e-6, rtol=1e-5)
    assert loaded.evaluate()["accuracy"] == s["test_accuracy"]


def test_the_report_names_each_members_model(mixed):
    from mnistlab.evaluation.report import _describe_model

    assert "`mlp` and `cnn` members" in _describe_model("mlp", mixed.summary)
    assert "`mlp` members" in _describe_model("mlp", mixed.summary | {"member_models": None})


def test_member_models_are_checked_and_name_the_committees_model(tmp_path):
    from mnistlab.cli.config_options import config_from_flags
    from mnistlab.recipes import long_recipe

    flags = {"members": 5, "member_models": ("lenet-wide", "deep-cnn")}
    cfg = config_from_flags(flags)  # no --model: the first of --member-models, with its long recipe
    assert cfg.model == long_recipe("lenet-wide").model and cfg.epochs == long_recipe("lenet-wide").epochs
    with pytest.raises(ConfigError, match="must start with the committee's --model"):
        config_from_flags(flags | {"model.name": "deep-cnn"})
    with pytest.raises(ConfigError, match="needs a committee"):
        config_from_flags({"model.name": "cnn", "member_models": ("cnn", "mlp")})
    unknown = mixed_config(tmp_path / "run")
    unknown.member_models = ("mlp", "resnet-1000")
    with pytest.raises(ConfigError, match="unknown model 'resnet-1000'"):
        mnistlab.train(unknown)
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("names", "words"),
    [
        (["mlp", "resnet-1000"], "cannot be built: unknown model 'resnet-1000'"),
        (["mlp", "mlp"], "weights are not those of its config's model .* of mlp,mlp in turn"),
    ],
)
def test_a_model_file_whose_member_models_lie_is_one_line(mixed, tmp_path, names, words):
    import shutil

    from run_folders import edit_model_file

    folder = tmp_path / "lying"
    shutil.copytree(mixed.path, folder)
    edit_model_file(folder, lambda raw: raw.update(member_models=names))
    with pytest.raises(RunError, match=words) as caught:
        mnistlab.load_run(folder)
    assert "model.safetensors" in str(caught.value) and "\n" not in str(caught.value)


# ---- a recipe search's committee: the test split withheld ---------------------------------------------------
def test_no_score_test_trains_a_committee_without_reading_the_test_split(tmp_path, monkeypatch):
    """--no-score-test: neither the members nor the committee score test; the summary says so with None, the
    report still renders, and the run can be scored later, deliberately, like any other."""
    from mnistlab.evaluation.report import run_report

    calls: list[str] = []
    real = Splits.score_test

    def spy(self, model, *args, **kwargs):
        calls.append(type(model).__name__)
        return real(self, model, *args, **kwargs)

    monkeypatch.setattr(Splits, "score_test", spy)
    cfg = committee_config(tmp_path / "run")
    cfg.members, cfg.epochs, cfg.score_test = 2, 1, False
    run = mnistlab.train(cfg)
    assert calls == []
    s = run.summary
    assert s["test_accuracy"] is None and s["member_test_accuracy"] is None and s["test_errors"] is None
    assert s["val_accuracy"] is not None  # validation is scored as always
    for k in range(2):
        member = json.loads((run.path / "members" / str(k) / "summary.json").read_text())
        assert member["test_accuracy"] is None and member["best_val_accuracy"] is not None
    assert not run.model.training  # returned ready for inference although nothing scored it
    html = run_report(run.path, out=tmp_path / "report").read_text()  # a deliberate, later look at test
    assert "not scored when the committee was trained" in html
    # grown with --score-test: the new member and the committee are scored, the first two stay unscored
    grown_config = _with_members(run.path, 3)
    grown_config.score_test = True
    grown = mnistlab.train(grown_config, resume=run.path)
    assert calls == ["MLP", "Committee"] and grown.summary["test_accuracy"] is not None
    assert grown.summary["member_test_accuracy"] is None  # a mean over some members would mislead


def test_a_run_with_neither_test_nor_validation_returns_its_model_in_eval_mode(tmp_path):
    """Scoring test used to leave the model in eval mode; with --no-score-test and no validation split, fit
    itself must (a model in training mode skips its width normalisation and keeps dropout on)."""
    cfg = tiny_mlp_config(tmp_path / "run")
    cfg.data.val_size, cfg.score_test, cfg.model.dropout = 0, False, 0.2
    run = mnistlab.train(cfg)
    assert not run.model.training and run.summary["test_accuracy"] is None
