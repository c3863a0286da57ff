"""convert / recipes / summary on a Hugging Face BERT (random init, 2 layers)."""

import copy

import pytest
import torch
from torch import nn

import intcore

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=32, num_labels=2,
    )
    return transformers.BertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 300, (8, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[:, 15:] = 0
    return ids, mask, torch.randint(0, 2, (8,), generator=g)


# Logit error of the converted random-init model vs float: shrinks ~4x per 2 bits.
LOGIT_TOLERANCE = {"int16": 2e-4, "int12": 2e-3, "int10": 8e-3, "int8": 3e-2, "int8-per-tensor": 3e-2,
                   "int8-mixed": 1e-2}


@pytest.mark.parametrize("recipe", list(LOGIT_TOLERANCE))
def test_converted_logits_stay_close_to_float(bert, batch, recipe):
    ids, mask, _ = batch
    model = intcore.convert(copy.deepcopy(bert), recipe, skip="classifier")
    with torch.no_grad():
        ref = bert(input_ids=ids, attention_mask=mask).logits
        out = model(input_ids=ids, attention_mask=mask).logits
    assert (out - ref).abs().max() < LOGIT_TOLERANCE[recipe]
    assert type(model.classifier) is nn.Linear


@pytest.mark.parametrize("recipe", ["int16", "int8"])
def test_training_loss_falls_over_30_steps(bert, batch, recipe):
    ids, mask, labels = batch
    torch.manual_seed(0)
    model = intcore.convert(copy.deepcopy(bert), recipe).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5


def test_state_dicts_load_both_ways(bert):
    model = intcore.convert(copy.deepcopy(bert), "int12")
    assert list(model.state_dict()) == list(bert.state_dict())
    fresh = copy.deepcopy(bert)
    fresh.load_state_dict(model.state_dict())
    model.load_state_dict(bert.state_dict())
    assert isinstance(model.bert.encoder.layer[0].output.dense, intcore.nn.FixedPointLinear)


def test_parameters_are_shared_not_copied(bert):
    model = copy.deepcopy(bert)
    weight = model.bert.encoder.layer[1].intermediate.dense.weight
    intcore.convert(model, "int8")
    assert model.bert.encoder.layer[1].intermediate.dense.weight is weight


def test_skip_patterns_and_callables(bert):
    model = intcore.convert(copy.deepcopy(bert), "int16", skip=["bert.embeddings", "*.attention.*"])
    assert type(model.bert.embeddings.word_embeddings) is nn.Embedding
    assert type(model.bert.embeddings.LayerNorm) is nn.LayerNorm
    assert type(model.bert.encoder.layer[0].attention.self.query) is nn.Linear
    assert isinstance(model.bert.encoder.layer[0].intermediate.dense, intcore.nn.FixedPointLinear)
    model = intcore.convert(copy.deepcopy(bert), "int16", skip=lambda name, m: isinstance(m, nn.Embedding))
    assert type(model.bert.embeddings.word_embeddings) is nn.Embedding
    assert isinstance(model.bert.embeddings.LayerNorm, intcore.nn.FixedPointLayerNorm)


def test_a_skip_pattern_that_names_nothing_is_refused(bert):
    with pytest.raises(ValueError, match=r"^convert: skip pattern 'classifer' matches no module of the model "
                                         r"\(its top-level modules: bert, dropout, classifier\)"):
        intcore.convert(copy.deepcopy(bert), "int16", skip="classifer")


@pytest.mark.parametrize("second", ["int8", "int16"])
def test_a_second_recipe_over_a_converted_model_is_refused(bert, second):
    model = intcore.convert(copy.deepcopy(bert), "int16")
    with pytest.raises(ValueError, match=r"^convert: nothing to convert: the model is already converted "
                                         r"\(bert.embeddings.word_embeddings is a FixedPointEmbedding\)"):
        intcore.convert(model, second)
    qbert = pytest.importorskip("intcore.qbert")
    with pytest.raises(ValueError, match="^convert: nothing to convert"):
        intcore.convert(model, qbert.QBertConfig(block_bits=(8, 4, 2)))


def test_two_calls_give_a_model_of_two_recipes(bert):
    model = intcore.convert(copy.deepcopy(bert), "int8", skip="classifier")
    intcore.convert(model, "int16")  # converts what is still float: the classifier
    assert model.classifier.config.describe() == "fixed-point int16"
    assert model.bert.encoder.layer[0].intermediate.dense.config.describe() != "fixed-point int16"


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=2, n_positions=16, pad_token_id=0,
                                     num_labels=2)
    return transformers.GPT2ForSequenceClassification(config).eval()


@pytest.mark.parametrize("recipe, kind, tolerance", [("int16", "FixedPointConv1D", 1e-3), ("int8", "FixedPointConv1D", 0.05),
                                                     ("int4-hq", "Int4Conv1D", 0.2)])
def test_gpt2_conv1d_layers_are_converted(gpt2, recipe, kind, tolerance):
    # GPT-2's linear layers are transformers Conv1D (weight stored [in, out]): converted, with the
    # parameter keeping its layout and name.
    model = intcore.convert(copy.deepcopy(gpt2), recipe)
    conv = model.transformer.h[0].attn.c_attn
    assert type(conv).__name__ == kind and conv.in_features == 32 and conv.out_features == 96
    assert not any(type(m).__name__ == "Conv1D" for m in model.modules())
    assert model.state_dict().keys() == gpt2.state_dict().keys()
    assert all(model.state_dict()[k].shape == v.shape for k, v in gpt2.state_dict().items())
    ids = torch.randint(1, 50, (3, 10))
    with torch.no_grad():
        assert (model(input_ids=ids).logits - gpt2(input_ids=ids).logits).abs().max() < tolerance
    model.train()
    model(input_ids=ids, labels=torch.tensor([0, 1, 1])).loss.backward()
    stored = conv._parameters["weight"]
    assert stored.shape == (32, 96) and stored.grad is not None and stored.grad.shape == (32, 96)


def test_gpt2_partly_converted_lists_its_float_conv1d_and_refuses_qdylora(gpt2):
    model = intcore.convert(copy.deepcopy(gpt2), "int8", skip="transformer.h.1")
    text = intcore.summary(model)
    assert "transformer.h.1.attn.c_attn" in text and "float (float32) 4" in text  # ~46% of parameters
    assert model.transformer.h[0].attn.c_attn.training is False  # the eval model's flag carried over
    with pytest.raises(ValueError, match=r"^wrap_qdylora: transformer.h.0.attn.c_attn is a transformers Conv1D"):
        intcore.peft.wrap_qdylora(model, intcore.peft.QDyLoraConfig(r_max=4, target_modules=("c_attn",),
                                                                    modules_to_save=("score",)))


def test_conv1d_gradient_is_the_linear_gradient_transposed():
    from transformers.pytorch_utils import Conv1D

    conv = Conv1D(6, 8)  # nf = 6 outputs, nx = 8 inputs
    converted = intcore.nn.FixedPointConv1D.from_conv1d(conv, intcore.FixedPointConfig.uniform(16, rounding="nearest"))
    assert converted.weight is not conv.weight and converted._parameters["weight"] is conv.weight
    x = torch.randn(5, 8)
    linear = intcore.nn.FixedPointLinear(8, 6, config=converted.config)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.T)
        linear.bias.copy_(conv.bias)
    converted(x).square().sum().backward()
    linear(x).square().sum().backward()
    assert torch.equal(conv.weight.grad, linear.weight.grad.T) and torch.equal(conv.bias.grad, linear.bias.grad)


def test_a_model_that_is_one_layer_comes_back_converted():
    linear = nn.Linear(8, 4)
    converted = intcore.convert(linear, "int16")
    assert isinstance(converted, intcore.nn.FixedPointLinear) and converted.weight is linear.weight
    assert intcore.convert(nn.LayerNorm(8), "int8") is not None


def test_summary_and_recipes(bert):
    model = intcore.convert(copy.deepcopy(bert), "int8-mixed", skip="classifier")
    text = intcore.summary(model)
    assert "bert.encoder.layer.0.intermediate.dense" in text and "fixed-point int8" in text
    assert "fixed-point int16" in text and "classifier" in text and "float (float32)" in text
    assert intcore.recipes.names() == ["fp32", "int16", "int12", "int10", "int8", "int8-per-tensor", "int8-mixed",
                                       "int4-hq"]
    assert intcore.convert(copy.deepcopy(bert), "fp32").state_dict().keys() == bert.state_dict().keys()
    with pytest.raises(ValueError, match="^convert: unknown recipe 'int7'; known recipes: fp32, int16"):
        intcore.convert(bert, "int7")
    with pytest.raises(TypeError, match=r"^convert: a FixedPointConfig configures one kind of layer; pass a recipe name"):
        intcore.convert(bert, intcore.FixedPointConfig.uniform(8))
