"""Inference is a function of the model and its input: in eval mode every recipe gives the same
output for the same input, with and without no_grad, and leaves PyTorch's random generator
alone (nearest rounding: FixedPointConfig.for_inference). Training mode still rounds
stochastically."""

import json

import pytest
import torch

import intcore
from intcore import recipes

transformers = pytest.importorskip("transformers")

from intcore.drivers import finetune, predict  # noqa: E402
from test_drivers import finetune_args, sentiment_csv, tiny_bert  # noqa: E402,F401  (fixtures)


def _bert() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=16, num_labels=2)
    return transformers.BertForSequenceClassification(config)


@pytest.mark.parametrize("recipe", [r for r in recipes.names() if r != "fp32"])
def test_eval_mode_is_deterministic_and_draws_nothing(recipe):
    model = intcore.convert(_bert(), recipe, skip="classifier").eval()
    ids = torch.randint(0, 50, (3, 12))
    state = torch.get_rng_state()
    with torch.no_grad():
        first = model(input_ids=ids).logits
        second = model(input_ids=ids).logits
    third = model(input_ids=ids).logits  # with autograd recording
    assert torch.equal(first, second) and torch.equal(first, third.detach())
    assert torch.equal(torch.get_rng_state(), state), f"{recipe}: eval mode advanced PyTorch's generator"


def test_training_mode_still_rounds_stochastically():
    model = intcore.convert(_bert(), "int8", skip="classifier").train()
    model.bert.embeddings.dropout.p = 0.0
    for layer in model.bert.encoder.layer:
        layer.attention.self.dropout.p = layer.attention.output.dropout.p = layer.output.dropout.p = 0.0
    ids = torch.randint(0, 50, (3, 12))
    with torch.no_grad():
        assert not torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)


def test_predict_twice_gives_the_same_probabilities(tiny_bert, sentiment_csv, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    assert finetune.cli(finetune_args(tiny_bert, sentiment_csv, out, "--recipes", "int8")) == 0
    capsys.readouterr()
    texts = ["the film was superb and lovely", "the film was dull and boring"]
    args = [str(out), "--jsonl"] + [a for t in texts for a in ("--text", t)]
    outputs = []
    for seed in (1, 2):
        torch.manual_seed(seed)  # whatever the generator holds
        assert predict.cli(args) == 0
        outputs.append([json.loads(line)["probabilities"] for line in capsys.readouterr().out.splitlines()])
    assert outputs[0] == outputs[1]
