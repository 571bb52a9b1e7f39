"""Mutation check of the committee's tests (tests/test_committee.py, tests/test_grouped.py): apply each
mutation, run the named tests, restore; print which test caught it.

    python bench/committee_mutations.py [INDEX ...]   (from the repository root; ~15-25 min on the shared 2-core box)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutations import run_mutations

C, G = "tests/test_committee.py", "tests/test_grouped.py"
MUTATIONS = [
    (
        "mean rule: geometric mean (mean of log-probabilities) instead of the mean of the softmax",
        "src/mnistlab/models/committee.py",
        "return torch.logsumexp(log_probs, dim=0) - torch.log(log_probs.new_full((), log_probs.shape[0]))",
        "return log_probs.mean(dim=0)",
        [C, "-k", "mean_rule or summary_matches"],
    ),
    (
        "vote: ties not broken by the mean probability",
        "src/mnistlab/models/committee.py",
        "score = votes + log_probs.exp().mean(dim=0)",
        "score = votes + 1e-3",
        [C, "-k", "vote"],
    ),
    (
        "members all get the committee's seed",
        "src/mnistlab/training/committee.py",
        '"seed": config.seed + index,',
        '"seed": config.seed,',
        [C, "-k", "own_seed"],
    ),
    (
        "members split validation with their own seed (no shared split_seed)",
        "src/mnistlab/training/committee.py",
        '"data.split_seed": split_seed,',
        '"data.split_seed": None,',
        [C, "-k", "own_seed"],
    ),
    (
        "prepare_data ignores split_seed",
        "src/mnistlab/training/trainer.py",
        "split_seed = config.seed if dc.split_seed is None else dc.split_seed",
        "split_seed = config.seed",
        [C, "tests/test_data_augment.py", "-k", "split_seed or own_seed"],
    ),
    (
        "shared errors counted with any() instead of all()",
        "src/mnistlab/training/committee.py",
        "int(wrong.all(dim=0).sum())",
        "int(wrong.any(dim=0).sum())",
        [C, "-k", "summary_matches"],
    ),
    (
        "the committee scores the test split twice",
        "src/mnistlab/training/committee.py",
        "    test = splits.score_test(committee, config.eval_batch_size)  # the committee's one test score\n",
        "    splits.score_test(committee, config.eval_batch_size)\n"
        "    test = splits.score_test(committee, config.eval_batch_size)\n",
        [C, "-k", "scored_once"],
    ),
    (
        "resume retrains complete members",
        "src/mnistlab/training/committee.py",
        'pending = [m for m in members if m.status() != "done"]',
        "pending = list(members)",
        [C, "-k", "resume_skips"],
    ),
    (
        "resume restarts interrupted members from scratch",
        "src/mnistlab/training/committee.py",
        'if self.status() == "resume":',
        'if False and self.status() == "resume":',
        [C, "-k", "resume_skips"],
    ),
    (
        "every process trains every member",
        "src/mnistlab/training/distributed.py",
        "return list(range(self.rank, count, self.world_size))",
        "return list(range(count))",
        [C, "-k", "nproc_2"],
    ),
    (
        "--members alone ignores the committee recipe",
        "src/mnistlab/recipes.py",
        "return committee_recipe(model, members)",
        "return recipe(model or DEFAULT_MODEL)",
        [C, "-k", "committee_recipe"],
    ),
    (
        "serve: no member votes in the answer",
        "src/mnistlab/app/server.py",
        "        if members is not None:  # a committee: each member's vote and how sure it is\n",
        "        if False:\n",
        [C, "-k", "serving"],
    ),
    (
        "report: no committee section",
        "src/mnistlab/evaluation/report.py",
        "        _committee_section(report, s)\n",
        "        pass\n",
        [C, "-k", "report"],
    ),
    (
        "lab: committee of the last k members instead of the first k",
        "src/mnistlab/lab/committee.py",
        "model.combine(lp[:k])",
        "model.combine(lp[-k:])",
        [C, "-k", "lab_analysis"],
    ),
    (
        "grouped: the mean of the members' losses (each gradient / N)",
        "src/mnistlab/training/grouped.py",
        "    losses.sum().backward()",
        "    losses.mean().backward()",
        [G, "-k", "fit_group_trains"],
    ),
    (
        "grouped: features flattened across members (member-minor layout)",
        "src/mnistlab/models/grouped.py",
        "return x.reshape(x.shape[0], self.count, -1).transpose(0, 1)",
        "return x.reshape(x.shape[0], -1, self.count).permute(2, 0, 1)",
        [G, "-k", "float64 and (cnn or mlp) and sgd"],
    ),
    (
        "grouped: linear weights not transposed per member",
        "src/mnistlab/models/grouped.py",
        "self.weight.transpose(1, 2))",
        "self.weight.transpose(1, 2).flip(0))",
        [G, "-k", "float64 and mlp and sgd"],
    ),
    (
        "grouped: the schedule is not stepped",
        "src/mnistlab/training/grouped.py",
        "        group.scheduler.step()\n",
        "",
        [G, "-k", "fit_group_trains"],
    ),
    (
        "grouped: momentum not handed back to the members (checkpoints lose it)",
        "src/mnistlab/training/grouped.py",
        "    _optimizer_to_members(group)\n",
        "",
        [G, "-k", "interrupted"],
    ),
    (
        "grouped: a resumed group starts with fresh momentum",
        "src/mnistlab/training/grouped.py",
        "    _optimizer_from_members(group)\n",
        "",
        [G, "-k", "interrupted"],
    ),
]
run_mutations(MUTATIONS, sys.argv[1:])
