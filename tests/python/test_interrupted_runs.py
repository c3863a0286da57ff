"""Work survives an interrupt: Ctrl-C (SIGINT) or SIGTERM stops a training run after the step in
progress with a checkpoint saved there, even before the first scheduled one; the directory is
kept; the message gives the exact command that continues it; a plain --resume continues the
newest run under runs/; and the resumed run ends where an uninterrupted one does. Checkpoints
are also saved by wall time (--checkpoint-minutes)."""

import json
import os
import signal

import pytest
import torch

pytest.importorskip("transformers")

from intcore.drivers import finetune, train_lm  # noqa: E402
from test_drivers import finetune_args, lm_args, sentiment_csv, tiny_bert, tiny_corpus  # noqa: E402,F401


@pytest.fixture
def signal_at_step(monkeypatch):
    """Sends `signum` to this process during the optimizer step number `at` (1-based)."""
    def arm(at: int, signum=signal.SIGINT):
        calls = {"n": 0}
        original = torch.optim.AdamW.step

        def step(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == at:
                os.kill(os.getpid(), signum)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.optim.AdamW, "step", step)
        return calls
    return arm


def _history(out, run):
    return json.loads((out / "results.json").read_text())["recipes"][run]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_finetune_interrupted_before_its_first_checkpoint_resumes_to_the_same_result(
        tiny_bert, sentiment_csv, tmp_path, monkeypatch, capsys, signal_at_step, signum):  # noqa: F811
    monkeypatch.chdir(tmp_path)  # runs/ (the default parent) under the test's directory
    args = ["--recipe", "int8", "--checkpoint-every", "1000"]
    full = tmp_path / "full"
    assert finetune.cli(finetune_args(tiny_bert, sentiment_csv, full, *args)) == 0
    capsys.readouterr()

    arm_args = finetune_args(tiny_bert, sentiment_csv, tmp_path / "unused", *args)
    cut_args = [a for a in arm_args if a not in ("--output", str(tmp_path / "unused"))]  # default output
    signal_at_step(3, signum)
    assert finetune.cli(cut_args) == 130
    err = capsys.readouterr().err
    [run_dir] = list((tmp_path / "runs").iterdir())
    assert "stopping after this step" in err and "Continue it from its last checkpoint with:" in err
    assert f"--output {run_dir.relative_to(tmp_path)} --resume" in err
    assert (run_dir / "checkpoints" / "int8" / "latest").read_text() == "step-00000003"
    monkeypatch.undo()  # the optimizer back to normal, and chdir undone: chdir again
    monkeypatch.chdir(tmp_path)

    assert finetune.cli(cut_args + ["--resume"]) == 0  # no --output: the newest run under runs/
    assert f"--resume continues the newest run, {run_dir.relative_to(tmp_path)}" in capsys.readouterr().out
    a, b = _history(full, "int8"), _history(run_dir, "int8")
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    assert a["test_accuracy"] == b["test_accuracy"] and a["test_loss"] == b["test_loss"]


def test_train_lm_interrupted_resumes_to_the_same_result(tiny_corpus, tmp_path, capsys, signal_at_step):  # noqa: F811
    full, cut = tmp_path / "full", tmp_path / "cut"
    args = ["--recipe", "int8", "--checkpoint-every", "1000"]
    assert train_lm.cli(lm_args(tiny_corpus, full, *args)) == 0
    calls = signal_at_step(7)
    assert train_lm.cli(lm_args(tiny_corpus, cut, *args)) == 130
    assert calls["n"] == 7  # stopped after the step in progress
    assert (cut / "checkpoints" / "int8" / "latest").read_text() == "step-00000007"
    calls["n"] = -10**9  # no more signals
    assert train_lm.cli(lm_args(tiny_corpus, cut, *args, "--resume")) == 0
    a, b = _history(full, "int8")["history"], _history(cut, "int8")["history"]
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]


def test_no_run_to_resume_under_runs_is_one_line(tiny_bert, sentiment_csv, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    args = [a for a in finetune_args(tiny_bert, sentiment_csv, "x") if a not in ("--output", "x")]
    assert finetune.cli(args + ["--resume"]) == 2
    assert "--resume: no run of `intcore finetune` under runs/ to continue" in capsys.readouterr().err


def test_checkpoints_by_wall_time(tiny_bert, sentiment_csv, tmp_path, monkeypatch):  # noqa: F811
    from intcore.drivers import checkpoint_triggers

    clock = {"t": 0.0}

    def monotonic():
        clock["t"] += 20.0  # every reading 20 s later: a checkpoint is due every few steps
        return clock["t"]

    monkeypatch.setattr(checkpoint_triggers.time, "monotonic", monotonic)
    out = tmp_path / "run"
    args = finetune_args(tiny_bert, sentiment_csv, out, "--recipe", "fp32", "--checkpoint-every", "1000",
                         "--checkpoint-minutes", "1", "--keep-checkpoints", "1000")
    assert finetune.cli(args) == 0
    saved = sorted(p.name for p in (out / "checkpoints" / "fp32").glob("step-*"))
    steps = _history(out, "fp32")["steps"]
    assert len(saved) > 2 * 2 + 1, saved  # more than the two epoch ends and the last step
    assert saved[-1] == f"step-{steps:08d}"
