"""The loss experiment's numerical claims, checked against PyTorch and by hand."""

from __future__ import annotations

import math

import pytest
import torch

from mnistlab.cli.app import main
from mnistlab.lab.loss import LECTURE_PAIRS, binary_cross_entropy_cases, ce_identity, compare_pair


def test_cross_entropy_equals_logsoftmax_plus_nll():
    gen = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(64, 10, generator=gen) * 5, torch.randint(0, 10, (64,), generator=gen)
    result = ce_identity(logits, labels)
    assert result["max_abs_difference"] < 1e-5
    # and the by-hand value really is -log softmax[label], computed in float64
    expected = -torch.log_softmax(logits.double(), 1)[torch.arange(64), labels]
    assert torch.allclose(torch.tensor(result["by_hand"], dtype=torch.float64), expected, atol=1e-5)


def test_lecture_q1_q2_ordering_is_computed():
    a, b = [0.1, 0.2, 0.9], [0.5, 2.0, 0.3]
    q1 = compare_pair(a, b, label=0)
    # b has the larger logit for class 0 but less softmax mass on it, hence the higher loss
    pa = math.exp(0.1) / sum(math.exp(v) for v in a)
    pb = math.exp(0.5) / sum(math.exp(v) for v in b)
    assert math.isclose(q1["loss_a"], -math.log(pa), rel_tol=1e-5)
    assert math.isclose(q1["loss_b"], -math.log(pb), rel_tol=1e-5)
    assert pb < pa and q1["higher"] == "b"
    assert "even though" in q1["why"]
    q2 = compare_pair(b, a, label=0)
    assert q2["higher"] == "a" and math.isclose(q2["loss_a"], q1["loss_b"])


def test_shift_invariance_and_other_pairs_are_consistent():
    for _, a, b in LECTURE_PAIRS:
        r = compare_pair(a, b)
        if r["higher"] == "equal":
            assert math.isclose(r["p_true_a"], r["p_true_b"], rel_tol=1e-5)
        else:  # the higher loss always goes with the smaller probability of the true class
            lower_p = min(r["p_true_a"], r["p_true_b"])
            assert r[f"p_true_{r['higher']}"] == lower_p


def test_binary_cross_entropy_by_hand_matches_torch():
    for row in binary_cross_entropy_cases():
        assert math.isclose(row["bce_by_hand"], row["bce_torch"], rel_tol=1e-5)


def test_loss_experiment_writes_its_files(tmp_path, capsys):
    out = tmp_path / "loss"
    with pytest.raises(SystemExit) as exit_info:  # through the CLI: `mnistlab lab loss --out DIR`
        main(["lab", "loss", "--out", str(out)])
    assert exit_info.value.code == 0
    assert "report.html" in capsys.readouterr().out
    for name in (
        "neg_log_p.png",
        "pairs.png",
        "report.html",
        "report.md",
        "pairs.csv",
        "numbers.json",
        "config.json",
    ):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "src='http" not in html
    assert html.index("<img") < html.index("<table")  # figures come first
