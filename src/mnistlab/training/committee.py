"""A committee (Ciresan et al. 2012): N complete runs on one validation split, combined into one model.

``mnistlab train --members N`` and ``mnistlab.train(config)`` with ``config.members = N`` come here. The folder
(layout in :mod:`mnistlab.runs`) holds ``config.json``, one complete run folder per member in ``members/K``,
then the combined ``model.safetensors`` and ``summary.json``. Member K is an ordinary run of
:func:`~mnistlab.training.fit.fit`: its config is the committee's with seed + K and the committee's split seed,
so every member holds out the same validation images and fits the same preprocessing statistics, while
initial weights, data order, dropout and distortions differ.

The story: open the folder, train this process's members, wait for the other processes, combine.

- **Several processes.** Under torchrun (``--nproc P``) member K is trained by process K % P on its own device
  (GPU ``LOCAL_RANK``, or a CPU process with its own threads); no gradient is exchanged. Rank 0 combines after
  a barrier. A member comes out the same whichever process trains it.
- **Several members at once.** ``members_at_once`` trains members together as one grouped network
  (:mod:`mnistlab.training.grouped`), for GPUs that a small CNN leaves launch-bound.
- **Resume.** Complete members are skipped, interrupted ones resume from their checkpoint, missing ones start.
- **The test split** is scored once per member (by its own fit) and once for the committee, here.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mnistlab.config import TrainConfig, with_values
from mnistlab.errors import ConfigError, RunError
from mnistlab.inference import score_committee
from mnistlab.models import Committee
from mnistlab.recipes import member_recipe
from mnistlab.runs import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    MEMBERS_DIR,
    METRICS_FILE,
    MODEL_FILE,
    SUMMARY_FILE,
    Run,
    create_run_dir,
    hold_run_folder,
    load_run,
    read_config,
    run_files,
    save_model_file,
    write_config,
    write_summary,
)
from mnistlab.training import distributed
from mnistlab.training.checkpoint import resume_changes
from mnistlab.training.distributed import MemberProcesses, SingleProcess
from mnistlab.training.environment import describe_environment
from mnistlab.training.fit import fit, torch_threads
from mnistlab.training.grouped import fit_group
from mnistlab.training.progress import Reporter
from mnistlab.training.trainer import prepare_data


@dataclass
class Member:
    """Member ``index`` of a committee: its config and its run folder, RUN/members/<index>."""

    index: int
    config: TrainConfig

    @property
    def folder(self) -> Path:
        return Path(self.config.out or "")

    def status(self) -> str:
        """ "done" (summary.json), "resume" (a checkpoint), or "new" (nothing trained yet)."""
        if (self.folder / SUMMARY_FILE).is_file():
            return "done"
        return "resume" if (self.folder / CHECKPOINT_FILE).is_file() else "new"

    def resume_from(self) -> Path | None:
        """The folder to resume, or None to start: a folder left without a checkpoint is emptied first."""
        if self.status() == "resume":
            return self.folder
        _clear_untrained(self.folder)
        return None


def member_config(config: TrainConfig, index: int, folder: Path) -> TrainConfig:
    """The committee's config for member ``index``: seed + index, the committee's split seed, one run; in a
    committee of several models, its own model's recipe (:func:`mnistlab.recipes.member_recipe`)."""
    split_seed = config.seed if config.data.split_seed is None else config.data.split_seed
    return with_values(
        member_recipe(config, index),  # its own model's recipe in a committee of several models
        {
            "seed": config.seed + index,
            "data.split_seed": split_seed,
            "members": 1,
            "member_models": None,
            "model.input_width": config.member_model(index).input_width,  # its own input variant
            "member_input_widths": None,
            "out": str(folder / MEMBERS_DIR / str(index)),
        },
    )


def train_committee(
    config: TrainConfig,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    reporter: Reporter | None = None,
) -> Run:
    """Train (or continue, ``resume``: the committee's folder) the committee ``config`` describes; its Run.
    ``overwrite``: ``config.out`` may hold an earlier run or committee, which is replaced.

    Under torchrun every process returns the same Run (loaded from the folder rank 0 wrote).
    """
    config = copy.deepcopy(config).validate()
    if config.members < 2:
        raise ConfigError(f"a committee needs --members >= 2, got {config.members}")
    if config.dry_run:
        raise ConfigError("--dry-run checks one run; leave out --members")
    for k in range(min(config.members, len(config.member_models or ()))):
        member_recipe(config, k)  # an unknown model is a ConfigError before any folder is made
    if resume is not None and overwrite:
        raise ConfigError("--resume continues a committee and --overwrite replaces one: choose one")
    with torch_threads(config.threads):
        processes = distributed.setup_members("cpu" if config.engine == "numpy" else config.device)
        try:
            return _train_committee(config, processes, Path(resume) if resume else None, overwrite, reporter)
        finally:
            processes.teardown()


def _train_committee(
    config: TrainConfig,
    processes: MemberProcesses,
    resume: Path | None,
    overwrite: bool,
    reporter: Reporter | None,
) -> Run:
    """The story: open the folder, train this process's members, wait for the others, combine."""
    t0 = time.perf_counter()
    reporter = reporter or Reporter(quiet=config.quiet, progress=config.progress and processes.is_main)
    folder = Path(processes.from_main(lambda: _open_folder(config, resume, overwrite)))
    config.out = str(folder)
    members = [Member(k, member_config(config, k, folder)) for k in range(config.members)]
    mine = [members[k] for k in processes.members(config.members)]
    at_once = config.members_at_once or (len(mine) if processes.device.type == "cuda" else 1)
    if config.engine != "torch":
        at_once = 1  # the grouped network is torch's
    _train_members(mine, processes.device, max(1, at_once), reporter)
    processes.barrier()  # every member is complete
    run = None
    if processes.is_main:
        run = combine_members(config, folder, processes.device, time.perf_counter() - t0, reporter)
    processes.barrier()  # the committee's files are written
    return run if run is not None else load_run(folder, str(processes.device))


def _open_folder(config: TrainConfig, resume: Path | None, overwrite: bool) -> str:
    """A new committee folder with its config.json, or the committee being resumed (checked, config updated)."""
    if resume is None:
        name = "-".join(dict.fromkeys(config.member_models or (config.model.name,)))  # deep-cnn-lenet-wide
        folder = create_run_dir(config.out, f"{name}-committee", overwrite=overwrite)
        if overwrite:
            with hold_run_folder(folder, empty_it=True):  # its lock while it is emptied
                pass
        config.out = str(folder)
        write_config(folder, config)
        return str(folder)
    return _reopen_folder(config, resume)


def _reopen_folder(config: TrainConfig, resume: Path) -> str:
    """The committee being resumed or grown: checked against ``config``, whose config.json it then gets."""
    stored = read_config(resume)
    # --members may grow (members are independent runs on the shared split), never shrink; any other change
    # that makes another committee is a ConfigError from resume_changes.
    if config.members < stored.members:
        raise ConfigError(
            f"cannot resume {resume} with --members {config.members}: it has {stored.members} members; "
            "a committee can grow, not shrink"
        )
    grows = config.members > stored.members
    if (resume / SUMMARY_FILE).is_file() and not grows:
        raise RunError(
            f"{resume}: nothing to resume (the committee of {stored.members} already completed; "
            f"--members N with N > {stored.members} adds members to it)"
        )
    if resume_changes(with_values(stored, {"members": config.members}), config, resume) or grows:
        _keep_earlier_summary(resume, stored.members)  # first: the folder is incomplete from here on
        config.out = str(resume)
        write_config(resume, config)
    return str(resume)


def _keep_earlier_summary(folder: Path, members: int) -> None:
    """A completed committee that grows keeps its smaller self's figures as summary-<members>-members.json;
    summary.json (the mark of a complete committee) comes back when the grown one is combined."""
    summary = folder / SUMMARY_FILE
    if summary.is_file():
        os.replace(summary, folder / f"summary-{members}-members.json")


def _train_members(members: list[Member], device: torch.device, at_once: int, reporter: Reporter) -> None:
    """Train the unfinished ``members`` on ``device``: alone, or ``at_once`` of them as one grouped network."""
    pending = [m for m in members if m.status() != "done"]
    for m in members:
        if m.status() == "done":
            reporter.line(f"member {m.index} (seed {m.config.seed}): complete, in {m.folder}")
    for group in _groups(pending, at_once):
        for m in group:
            reporter.line(f"member {m.index} (seed {m.config.seed}) -> {m.folder}")
        resumes = [m.resume_from() for m in group]
        if len(group) > 1:
            fit_group([m.config for m in group], resumes, device, reporter)
        else:
            fit(group[0].config, resume=resumes[0], reporter=reporter, process=SingleProcess(device))


def _groups(members: list[Member], at_once: int) -> list[list[Member]]:
    """``members`` in groups of up to ``at_once`` that one grouped network can train: members of one model
    (a committee of several models groups each model's members apart)."""
    by_model: dict[str, list[Member]] = {}
    for m in members:
        by_model.setdefault(m.config.model.name, []).append(m)
    return [ms[i : i + at_once] for ms in by_model.values() for i in range(0, len(ms), at_once)]


def _clear_untrained(folder: Path) -> None:
    """A member folder that a crash left before its first checkpoint holds only its config and empty
    metrics: remove those so that the member starts again; anything else there is a RunError."""
    if not folder.is_dir():
        return
    left = {p.name for p in run_files(folder)}  # a killed run's lock and temporary files do not count
    if left - {CONFIG_FILE, METRICS_FILE}:
        raise RunError(
            f"{folder}: member folder without a checkpoint holds {', '.join(sorted(left))}; "
            "move it away to train this member again"
        )
    for name in left:
        (folder / name).unlink()


# ---- combining -----------------------------------------------------------------------------------------------
def combine_members(
    config: TrainConfig, folder: Path, device: torch.device, seconds: float, reporter: Reporter
) -> Run:
    """Load the complete members, score the committee on validation and (once) on test, write its files."""
    runs = [load_run(folder / MEMBERS_DIR / str(k), str(device)) for k in range(config.members)]
    preprocessor = runs[0].preprocessor
    for run in runs[1:]:
        _check_same_preprocessing(runs[0], run)
    committee = Committee([run.model for run in runs], config.combine).to(device)
    splits = prepare_data(runs[0].config, device, progress=False)  # the members' own split and statistics
    val = None
    if splits.val is not None:
        val = score_committee(committee, splits.val.images, splits.val.labels, config.eval_batch_size)
    test = None  # --no-score-test: withheld, and so are the members' (their configs carry the flag)
    if config.score_test:
        test = splits.score_test(committee, config.eval_batch_size)  # the committee's one test score
    summary = committee_summary(config, runs, val, test, splits.test.labels.cpu())
    summary |= {"wall_seconds": round(seconds, 3), "environment": describe_environment(device)}
    save_model_file(folder / MODEL_FILE, committee, preprocessor, config)
    write_summary(folder, summary)  # last: its presence marks the committee complete
    reporter.line(_result_line(summary))
    return Run(folder, config, committee, preprocessor, summary, [], device)


def _check_same_preprocessing(first: Run, other: Run) -> None:
    a, b = first.preprocessor, other.preprocessor
    same = a.metadata() == b.metadata() and all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    if not same:
        raise RunError(
            f"{other.path}: preprocessing differs from {first.path}'s; committee members must share the "
            "training split and preprocessing (data.split_seed, train_subset, normalize, norm_stats)"
        )


def committee_summary(
    config: TrainConfig, runs: list[Run], val: dict | None, test: dict | None, test_labels: torch.Tensor
) -> dict:
    """summary.json of a committee: members one by one, their mean ± std, the committee, shared errors.
    ``test`` None (--no-score-test): every test figure is None."""
    members = [_member_row(k, run) for k, run in enumerate(runs)]
    member_val = [m["val_accuracy"] for m in members if m["val_accuracy"] is not None]
    member_test = [m["test_accuracy"] for m in members if m["test_accuracy"] is not None]
    return {
        "kind": "committee",
        "model": config.model.name,
        "dataset": config.data.dataset,
        "seed": config.seed,
        "split_seed": runs[0].config.data.split_seed,
        "members": config.members,
        "member_models": list(config.member_models) if config.member_models else None,
        "member_input_widths": list(config.member_input_widths) if config.member_input_widths else None,
        "combine": config.combine,
        "parameters": sum(run.summary.get("parameters", 0) for run in runs),
        "member_runs": members,
        "member_val_accuracy": mean_std(member_val) if member_val else None,
        "member_test_accuracy": mean_std(member_test) if len(member_test) == len(members) else None,
        "val_accuracy": val["accuracy"] if val else None,
        "val_loss": val["loss"] if val else None,
        **_test_fields(test, test_labels),
        "train_seconds": round(sum(m["train_seconds"] for m in members), 3),
    }


def _test_fields(test: dict | None, labels: torch.Tensor) -> dict:
    """The committee's test figures: accuracy, loss, errors and the errors its members share (None: withheld)."""
    names = ("accuracy", "loss", "images", "errors", "errors_shared_by_all_members", "errors_of_any_member")
    if test is None:
        return {f"test_{name}": None for name in names}
    wrong = test["member_predictions"] != labels  # (M, N): which test images each member gets wrong
    values = (test["accuracy"], test["loss"], test["images"], int((test["predictions"] != labels).sum()))
    shared = (int(wrong.all(dim=0).sum()), int(wrong.any(dim=0).sum()))
    return {f"test_{name}": value for name, value in zip(names, values + shared, strict=True)}


def _member_row(index: int, run: Run) -> dict:
    s = run.summary
    return {
        "member": index,
        "folder": f"{MEMBERS_DIR}/{index}",
        "seed": run.config.seed,
        "model": run.config.model.name,
        "input_width": run.config.model.input_width,  # None: the digits as written
        "best_epoch": s.get("best_epoch"),
        "val_accuracy": s.get("best_val_accuracy"),  # the kept weights' accuracy on the shared split
        "test_accuracy": s.get("test_accuracy"),  # None: withheld (--no-score-test)
        "train_seconds": s.get("train_seconds", 0.0),
        # The code that trained this member: a committee resumed or grown may hold members of several commits,
        # while the committee's own environment is read when it is combined.
        "git_commit": s.get("environment", {}).get("git_commit"),
    }


def mean_std(values: list[float]) -> dict:
    """Mean and sample standard deviation (n - 1; 0.0 for one value)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def _result_line(s: dict) -> str:
    m = s["member_test_accuracy"]
    val = "" if s["val_accuracy"] is None else f"val {100 * s['val_accuracy']:.2f} %, "
    if s["test_accuracy"] is None:
        return f"committee of {s['members']} ({s['combine']}): {val}test not scored (--no-score-test)"
    # members trained with --no-score-test (a committee grown or resumed with --score-test) have no test figure
    members = "members not scored" if m is None else f"members {100 * m['mean']:.2f} ± {100 * m['std']:.2f} %"
    return (
        f"committee of {s['members']} ({s['combine']}): {val}test accuracy {100 * s['test_accuracy']:.2f} % "
        f"({s['test_errors']} errors); {members}; "
        f"{s['test_errors_shared_by_all_members']} test errors shared by all members"
    )
