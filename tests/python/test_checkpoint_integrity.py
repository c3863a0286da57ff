"""Checkpoints and output directories under damage and interruption: checksums, a lost
``latest`` pointer, leftovers of an interrupted save, files flushed before they are published,
and the one-line messages of the drivers."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from intcore.drivers import checkpoint, train_lm
from intcore.drivers.errors import DriverError


def _model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(8, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(3, 8)).sum().backward()
    optimizer.step()
    return model, optimizer


def _save(directory: Path, step: int, seed: int = 0) -> Path:
    model, optimizer = _model_and_optimizer(seed)
    rng = {"rng.cpu": torch.get_rng_state()}
    return checkpoint.save(directory, step, model, optimizer, None, {"history": [{"step": step}]}, rng)


def _load(path: Path):
    model, optimizer = _model_and_optimizer(1)
    return checkpoint.load(path, model, optimizer, None), model


def _one_line_refusal(path: Path, match: str) -> str:
    with pytest.raises(DriverError, match=match) as info:
        _load(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_round_trip_restores_model_and_state(tmp_path):
    path = _save(tmp_path, 5)
    (state, _rng), model = _load(path)
    expected, _ = _model_and_optimizer(0)
    assert state == {"history": [{"step": 5}], "step": 5}
    assert torch.equal(model.weight, expected.weight)
    assert set(json.loads((path / "manifest.json").read_text())["files"]) == {
        "model.safetensors", "optimizer.safetensors", "state.json"}


@pytest.mark.parametrize("name,flips", [("model.safetensors", 1), ("optimizer.safetensors", 64), ("state.json", 1)])
def test_flipped_bytes_are_detected(tmp_path, name, flips):
    path = _save(tmp_path, 5)
    data = bytearray((path / name).read_bytes())
    for i in range(flips):  # bytes at the end: tensor data (or the JSON), not the header
        data[-1 - 3 * i] ^= 0x10
    (path / name).write_bytes(bytes(data))
    _one_line_refusal(path, f"{name} does not match its checksum")


def test_rewritten_step_is_detected(tmp_path):
    path = _save(tmp_path, 5)
    meta = json.loads((path / "state.json").read_text())
    meta["step"] = 9
    (path / "state.json").write_text(json.dumps(meta))
    _one_line_refusal(path, "state.json does not match its checksum")
    # A checkpoint moved to another step's name.
    other = _save(tmp_path / "b", 5)
    moved = other.parent / "step-00000009"
    other.rename(moved)
    _one_line_refusal(moved, "manifest.json is for step 5, not for step-00000009")


def test_state_json_without_its_keys_is_one_line(tmp_path):
    path = _save(tmp_path, 5)
    (path / "state.json").write_text("{}")
    manifest = json.loads((path / "manifest.json").read_text())  # a manifest that agrees with it
    manifest["files"]["state.json"] = checkpoint._hash(path / "state.json")
    (path / "manifest.json").write_text(json.dumps(manifest))
    _one_line_refusal(path, "state.json lacks step, state, optimizer, scheduler")


def test_checkpoint_without_manifest_is_refused(tmp_path):
    path = _save(tmp_path, 5)
    (path / "manifest.json").unlink()
    _one_line_refusal(path, "no manifest.json")


def test_deleted_latest_pointer_resumes_from_the_newest_complete_checkpoint(tmp_path):
    for step in (5, 10):
        _save(tmp_path, step)
    (tmp_path / "latest").unlink()
    assert checkpoint.latest(tmp_path) == tmp_path / "step-00000010"
    # A step directory without its manifest is not complete: the one before it is used.
    (tmp_path / "step-00000010" / "manifest.json").unlink()
    assert checkpoint.latest(tmp_path) == tmp_path / "step-00000005"
    (tmp_path / "step-00000005" / "manifest.json").unlink()
    with pytest.raises(DriverError, match="holds no complete checkpoint"):
        checkpoint.latest(tmp_path)
    assert checkpoint.latest(tmp_path / "nothing-here") is None


def test_pruning_keeps_the_newest_and_removes_the_empty_checkpoints_folder(tmp_path):
    runs = tmp_path / "checkpoints"
    for step in (5, 10, 100_000_000):  # past 8 digits: newest by number, not by name
        _save(runs / "a", step)
    (runs / "a" / "step-notes").mkdir()  # not a checkpoint: never deleted as one
    _save(runs / "b", 5)
    checkpoint.prune_finished(runs / "a", 2)
    assert sorted(p.name for p in (runs / "a").iterdir()) == ["latest", "step-00000010", "step-100000000",
                                                              "step-notes"]
    checkpoint.prune_finished(runs / "a", 0)
    assert [p.name for p in runs.iterdir()] == ["b"]  # another run's checkpoints keep the folder
    checkpoint.prune_finished(runs / "b", 0)
    assert not runs.exists() and tmp_path.is_dir()


def test_leftovers_of_an_interrupted_save_are_cleaned(tmp_path):
    _save(tmp_path, 5)
    (tmp_path / ".incomplete-abc123").mkdir()
    (tmp_path / ".incomplete-abc123" / "model.safetensors").write_bytes(b"half")
    (tmp_path / ".latest.xyz.tmp").write_text("step-00000010")
    assert checkpoint.latest(tmp_path, clean=True) == tmp_path / "step-00000005"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000005"]
    (tmp_path / ".incomplete-def456").mkdir()
    (tmp_path / ".latest.uvw.tmp").write_text("")
    _save(tmp_path, 10)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_files_are_flushed_before_the_rename_that_publishes_them(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def recording_replace(src, dst):
        events.append(("replace", str(src), str(dst)))
        return replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    final = _save(tmp_path, 5)
    publish = next(i for i, e in enumerate(events) if e[0] == "replace" and e[2] == str(final))
    staging = events[publish][1]
    synced_before = {e[1] for e in events[:publish] if e[0] == "fsync"}
    for name in ("model.safetensors", "optimizer.safetensors", "state.json", "manifest.json"):
        assert f"{staging}/{name}" in synced_before, name
    assert staging in synced_before
    pointer = next(i for i, e in enumerate(events) if e[0] == "replace" and e[2] == str(tmp_path / "latest"))
    assert ("fsync", events[pointer][1]) in events[:pointer]  # the pointer's temporary file
    assert ("fsync", str(tmp_path)) in events[pointer:]  # and the directory holding the renames


# ---- the drivers' messages -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus")
    (path / "a.txt").write_text("to be or not to be, that is the question.\n" * 40)
    return path


def lm_args(corpus, output, *extra):
    return ["--corpus", str(corpus), "--layers", "1", "--width", "16", "--heads", "2", "--context", "16",
            "--steps", "4", "--batch-size", "2", "--eval-every", "2", "--eval-batches", "1", "--recipe", "fp32",
            "--checkpoint-every", "2", "--output", str(output), "--no-progress", *extra]


def run(args, capsys):
    code = train_lm.cli(args)
    return code, capsys.readouterr().err.strip()


def test_output_naming_an_existing_file_is_one_line(tiny_corpus, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("not a directory")
    code, err = run(lm_args(tiny_corpus, target), capsys)
    assert code == 2 and "is an existing file" in err and len(err.splitlines()) == 1
    assert target.read_text() == "not a directory"


def test_failed_start_leaves_no_output_directory(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    code, err = run(lm_args(tmp_path / "no-such-corpus", out), capsys)
    assert code == 2 and "--corpus" in err
    assert not (tmp_path / "new").exists()


def test_interrupted_run_says_whether_it_can_resume(tiny_corpus, tmp_path, capsys, monkeypatch):
    train = train_lm.train_recipe

    def interrupted_at_once(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_lm, "train_recipe", interrupted_at_once)
    out = tmp_path / "early"
    code, err = run(lm_args(tiny_corpus, out), capsys)
    assert code == 130 and "before training started" in err and "Continue it" not in err
    assert not out.exists()  # nothing was written, so nothing is left

    def interrupted_after_a_checkpoint(args, recipe, corpus, world, device, output):
        args.steps = 2
        train(args, recipe, corpus, world, device, output)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_lm, "train_recipe", interrupted_after_a_checkpoint)
    out = tmp_path / "late"
    code, err = run(lm_args(tiny_corpus, out), capsys)
    assert code == 130 and "Continue it from its last checkpoint with:" in err and f"--output {out} --resume" in err
    monkeypatch.setattr(train_lm, "train_recipe", train)
    code, err = run(lm_args(tiny_corpus, out, "--resume"), capsys)
    assert code == 0, err


def test_resume_with_a_deleted_pointer_and_a_damaged_checkpoint(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(lm_args(tiny_corpus, out), capsys)[0] == 0
    ckpts = out / "checkpoints" / "fp32"
    (ckpts / "latest").unlink()
    (out / "results.json").unlink()
    newest = sorted(ckpts.glob("step-*"))[-1]
    data = bytearray((newest / "model.safetensors").read_bytes())
    data[-2] ^= 0xFF
    (newest / "model.safetensors").write_bytes(bytes(data))
    code, err = run(lm_args(tiny_corpus, out, "--resume"), capsys)
    assert code == 2 and newest.name in err and "does not match its checksum" in err and len(err.splitlines()) == 1
    shutil.rmtree(newest)  # then the run resumes from the newest complete one left (or starts over)
    code, err = run(lm_args(tiny_corpus, out, "--resume"), capsys)
    assert code == 0, err
