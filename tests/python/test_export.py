"""A fine-tuned run's exported models: Hugging Face directories that transformers loads as they
are, `intcore evaluate` and `intcore predict` in each recipe's arithmetic, and what a run
leaves on disk."""

import csv
import json
import os
import stat

import pytest
import torch

transformers = pytest.importorskip("transformers")

from intcore.drivers import classification_data, evaluate, export, finetune, predict  # noqa: E402
from test_drivers import finetune_args, sentiment_csv, tiny_bert  # noqa: E402,F401  (fixtures)


def test_validation_runs_evals_per_epoch_times_never_twice_at_the_end():
    # 321 steps per epoch, 4 passes: the old `step % 80 == 0 or step == last` validated at 320 and 321.
    due = [s for s in range(1, 2 * 321 + 1) if finetune.evaluation_due(s, 321, 4)]
    assert due == [81, 161, 241, 321, 402, 482, 562, 642]
    assert [s for s in range(1, 4) if finetune.evaluation_due(s, 3, 5)] == [1, 2, 3]


@pytest.fixture(scope="module")
def run(tiny_bert, sentiment_csv, tmp_path_factory):  # noqa: F811
    """An fp32 and an int8 run of the tiny BERT, with default checkpoint keeping."""
    out = tmp_path_factory.mktemp("export") / "run"
    assert finetune.cli(finetune_args(tiny_bert, sentiment_csv, out, "--recipes", "fp32,int8")) == 0
    return out


@pytest.fixture(scope="module")
def test_split(sentiment_csv, tmp_path_factory):  # noqa: F811
    """The run's own test split, as a labelled CSV file."""
    data = classification_data.load(str(sentiment_csv), 0, "review", "sentiment")
    path = tmp_path_factory.mktemp("split") / "test.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        writer.writerows([text, data.label_names[label]] for text, label in data.test)
    return path, data


def test_a_run_keeps_its_models_not_its_checkpoints_and_files_are_readable(run):
    results = json.loads((run / "results.json").read_text())
    assert not (run / "checkpoints").exists()
    for name in ("fp32", "int8"):
        directory = run / "models" / name
        assert results["recipes"][name]["model"] == str(directory)
        assert {"config.json", "model.safetensors", "tokenizer_config.json", export.RECORD} <= set(os.listdir(directory))
        record = export.read_record(directory, "test")
        assert (record.recipe, record.labels, record.skip) == (name, ["neg", "pos"], "classifier")
    umask = os.umask(0)
    os.umask(umask)
    for path in [run / "results.json", run / "curves.csv", run / "curves.png", run / "models" / "int8" / "model.safetensors"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    assert stat.S_IMODE((run / "models" / "int8").stat().st_mode) == 0o777 & ~umask


def _run_logits(model, batches):
    with torch.no_grad():
        return torch.cat([model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits for b in batches])


def test_transformers_loads_the_export_and_gets_the_runs_evaluation(run, test_split):
    path, data = test_split
    directory = run / "models" / "fp32"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(directory).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    ids = classification_data.tokenize(tokenizer, data.test, export.read_record(directory, "test").max_length)
    batches = classification_data.evaluation_batches(ids, export.read_record(directory, "test").batch_size,
                                                     tokenizer.pad_token_id)
    logits = _run_logits(model, batches)
    labels = torch.cat([b.labels for b in batches])
    own = json.loads((run / "results.json").read_text())["recipes"]["fp32"]
    loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item() / len(labels)
    assert loss == pytest.approx(own["test_loss"], rel=1e-6)
    assert (logits.argmax(-1) == labels).float().mean().item() == own["test_accuracy"]
    # intcore's own loading of the fp32 run computes the same logits, bit for bit.
    ours, _, _ = export.load(directory, torch.device("cpu"), "test")
    assert torch.equal(_run_logits(ours, batches), logits)


def test_evaluate_reproduces_each_runs_test_figures(run, test_split, tmp_path, capsys):
    path, _ = test_split
    figures = tmp_path / "figures.json"
    assert evaluate.cli([str(run), "--data", str(path), "--text-column", "review", "--label-column", "sentiment",
                         "--output", str(figures)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "int8" in printed
    own = json.loads((run / "results.json").read_text())["recipes"]
    for name, r in json.loads(figures.read_text())["runs"].items():
        assert r["accuracy"] == own[name]["test_accuracy"] and r["f1"] == own[name]["test_f1"]
        assert r["loss"] == pytest.approx(own[name]["test_loss"], rel=1e-9)


def test_predict_gives_labels_and_probabilities(run, capsys):
    texts = ["the film was superb and lovely", "the film was dull and boring"]
    assert predict.cli([str(run), "--runs", "fp32", "--jsonl"] + [a for t in texts for a in ("--text", t)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == texts and {r["run"] for r in rows} == {"fp32"}
    model = transformers.AutoModelForSequenceClassification.from_pretrained(run / "models" / "fp32").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(run / "models" / "fp32")
    with torch.no_grad():
        expected = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    for row, p in zip(rows, expected.tolist()):
        assert list(row["probabilities"].values()) == pytest.approx(p, abs=1e-6)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
    assert predict.cli([str(run / "models" / "int8"), "--text", texts[0]]) == 0
    assert "p(pos)" in capsys.readouterr().out


def test_evaluate_and_predict_bad_input(run, test_split, tmp_path, capsys):
    path, _ = test_split
    code = evaluate.cli([str(tmp_path), "--data", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("intcore evaluate: error: RUN_DIR") and "no exported model" in err
    code = evaluate.cli([str(run), "--data", str(path), "--text-column", "review", "--label-column", "review"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--data" in err and "neither a label" in err and len(err.splitlines()) == 1
    code = predict.cli([str(run), "--runs", "int4-hq", "--text", "x"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("intcore predict: error: --runs") and "fp32" in err
