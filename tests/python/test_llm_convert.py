"""convert on decoder LLMs: tiny random Llama, Qwen2 and Gemma 3 models (each architecture's own
RMSNorm class, Gemma's scaling by 1 + weight) under every integer recipe."""

import copy

import pytest
import torch
from torch import nn

import intcore
from intcore.nn.rms_norm import rms_norm_form

transformers = pytest.importorskip("transformers")

ARCHITECTURES = ("llama", "qwen2", "gemma3")


def tiny_causal_lm(arch: str):
    """A 2-layer random causal LM of `arch` (hidden 64, vocab 97), in eval mode."""
    torch.manual_seed(0)
    common = dict(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64)
    if arch == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common, tie_word_embeddings=True))
    elif arch == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))
    else:
        config = transformers.Gemma3TextConfig(**common, head_dim=16, sliding_window=16)
        model = transformers.Gemma3ForCausalLM(config)
    with torch.no_grad():  # Gemma's norms start at weight 0 (scale 1): give every norm a shape to keep
        for module in model.modules():
            if rms_norm_form(module) is not None:
                module.weight.add_(torch.randn_like(module.weight) * 0.2)
    return model.eval()


@pytest.fixture(scope="module", params=ARCHITECTURES)
def lm(request):
    return request.param, tiny_causal_lm(request.param)


def norms(model):
    return [(n, m) for n, m in model.named_modules() if rms_norm_form(m) is not None]


def test_every_rms_norm_class_is_recognized(lm):
    arch, model = lm
    found = norms(model)
    # two per layer and the final norm; Gemma 3 also normalizes q and k and around the MLP
    assert len(found) >= 2 * 2 + 1
    offsets = {rms_norm_form(m).weight_offset for _, m in found}
    assert offsets == ({1.0} if arch == "gemma3" else {0.0})


LOGIT_TOLERANCE = {"int16": 2e-3, "int8": 0.15, "int8-mixed": 0.15}


@pytest.mark.parametrize("recipe", list(LOGIT_TOLERANCE))
def test_converted_llm_stays_close_to_float(lm, recipe):
    arch, model = lm
    ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(1))
    converted = intcore.convert(copy.deepcopy(model), recipe)
    assert not norms(converted), "an RMSNorm stayed float"
    assert any(isinstance(m, intcore.nn.FixedPointRMSNorm) for m in converted.modules())
    assert converted.state_dict().keys() == model.state_dict().keys()
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        out = converted(input_ids=ids).logits
    scale = ref.abs().max()
    assert (out - ref).abs().max() / scale < LOGIT_TOLERANCE[recipe], arch


def test_rms_norm_module_matches_the_float_one_at_16_bits(lm):
    # Each converted norm against its own float module, gradients included (Gemma: the weight's
    # gradient through 1 + weight).
    arch, model = lm
    for name, norm in norms(model)[:3]:
        fixed = intcore.nn.FixedPointRMSNorm.from_rms_norm(copy.deepcopy(norm), intcore.FixedPointConfig.uniform(16))
        x = torch.randn(3, 5, norm.weight.shape[0]) * 4
        g = torch.randn_like(x)
        results = []
        for module in (norm, fixed):
            module.weight.grad = None
            xi = x.clone().requires_grad_()
            y = module.train()(xi)
            y.backward(g)
            results.append((y.detach(), xi.grad, module.weight.grad.clone()))
        for got, want in zip(results[1], results[0]):
            assert (got - want).abs().max() / want.abs().max() < 2e-3, (arch, name)


@pytest.mark.parametrize("recipe", ["int16", "int8", "int8-mixed", "int4-hq"])
def test_causal_lm_loss_falls_under_every_recipe(lm, recipe):
    arch, model = lm
    torch.manual_seed(0)
    model = intcore.convert(copy.deepcopy(model), recipe).train()
    ids = torch.randint(0, 97, (4, 16), generator=torch.Generator().manual_seed(2))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], (arch, recipe, losses)


def test_torch_rms_norm_converts():
    norm = nn.RMSNorm(32, eps=None)
    model = intcore.convert(nn.Sequential(nn.Linear(8, 32), norm), "int16")
    assert isinstance(model[1], intcore.nn.FixedPointRMSNorm)
    assert model[1].eps == torch.finfo(torch.float32).eps
    x = torch.randn(4, 8)
    torch.testing.assert_close(model.eval()(x), nn.functional.rms_norm(model[0](x), (32,), norm.weight), atol=2e-3,
                               rtol=2e-3)


def test_summary_lists_rms_norms(lm):
    _, model = lm
    text = intcore.summary(intcore.convert(copy.deepcopy(model), "int8"))
    assert "FixedPointRMSNorm" in text
    assert "RMSNorm" in intcore.summary(model)
