"""QDyLoRA (intcore.peft.qdylora, intcore.nn.dylora, intcore.nn.int4_base) on tiny random BERTs."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from intcore import functional, peft
from intcore.nn import DyLoraLinear, Int4BaseLinear, NF4Linear
from intcore.nn.int4_base import quantize_int4_groups
from intcore.peft import QDyLoraConfig, qdylora

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


def tiny_bert(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=40, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=128, max_position_embeddings=32, num_labels=2)
    return transformers.BertForSequenceClassification(config)


def batch():
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 40, (4, 12), generator=g), torch.tensor([0, 1, 1, 0])


def wrapped(base="fp32", seed=0, **kwargs) -> nn.Module:
    kwargs.setdefault("dropout", 0.0)
    model = peft.wrap_qdylora(tiny_bert(seed), QDyLoraConfig(r_max=4, base=base, **kwargs))
    with torch.no_grad():  # a trained-looking B, so the LoRA branch matters
        for layer in qdylora._dylora_layers(model):
            layer.lora_B.normal_(0, 0.05)
    return model


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


# -- DyLoRA semantics -------------------------------------------------------------------------

@pytest.mark.parametrize("base", ["fp32", "nf4", "int4"])
def test_forward_at_rank_b_is_lora_with_truncated_factors(base):
    torch.manual_seed(0)
    inner = {"fp32": lambda lin: lin, "nf4": NF4Linear.from_linear, "int4": Int4BaseLinear.from_linear}[base]
    layer = DyLoraLinear(inner(nn.Linear(64, 32)), r_max=6, alpha=12.0)
    nn.init.normal_(layer.lora_B)
    x = torch.randn(3, 7, 64)
    for b in range(1, 7):
        layer.rank = b
        a, bm = layer.lora_A[:b].detach(), layer.lora_B[:, :b].detach()
        expected = layer.base_layer(x) + (12.0 / b) * (x @ a.T) @ bm.T
        assert torch.allclose(layer.eval()(x), expected, rtol=1e-5, atol=1e-5), b


@pytest.mark.parametrize("mode", ["frozen", "all"])
def test_gradients_reach_only_the_ranks_the_mode_trains(mode):
    torch.manual_seed(0)
    layer = DyLoraLinear(nn.Linear(16, 8).requires_grad_(False), r_max=5, alpha=5.0, mode=mode)
    nn.init.normal_(layer.lora_B)
    layer.train()
    for b in range(1, 6):
        layer.training_rank = b
        layer.zero_grad()
        layer(torch.randn(10, 16)).pow(2).sum().backward()
        trained = [b - 1] if mode == "frozen" else list(range(b))
        for r in range(5):
            a_row, b_col = layer.lora_A.grad[r], layer.lora_B.grad[:, r]
            if r in trained:
                assert a_row.abs().sum() > 0 and b_col.abs().sum() > 0, (b, r)
            else:
                assert (a_row == 0).all() and (b_col == 0).all(), (b, r)


def test_rank_draws_depend_on_seed_and_step_only():
    draws = [peft.draw_rank(7, step, 8) for step in range(4000)]
    assert draws == [peft.draw_rank(7, step, 8) for step in range(4000)]
    counts = torch.bincount(torch.tensor(draws), minlength=9)[1:]
    assert counts.min() > 400 and counts.max() < 600  # uniform: 500 each, sd ~21
    assert draws[:50] != [peft.draw_rank(8, step, 8) for step in range(50)]


@pytest.mark.parametrize("accumulation", [1, 3])
def test_training_forwards_use_the_step_rank_shared_by_micro_steps(accumulation):
    model = wrapped(seed=1, accumulation_steps=accumulation)
    ids, labels = batch()
    layers = qdylora._dylora_layers(model)
    model.train()
    for t in range(9):
        model(input_ids=ids, labels=labels)
        expected = peft.draw_rank(0, t // accumulation, 4)
        assert all(layer.training_rank == expected for layer in layers)
    assert int(model.qdylora_step) == 9
    model.eval()
    model(input_ids=ids)  # evaluation draws nothing
    assert int(model.qdylora_step) == 9


def test_fixed_mode_is_plain_lora_at_r_max():
    model = wrapped(mode="fixed")
    model.train()
    ids, labels = batch()
    model(input_ids=ids, labels=labels).loss.backward()
    for layer in qdylora._dylora_layers(model):
        assert layer.training_rank == 4 and (layer.lora_B.grad != 0).all(dim=0).all()


def test_set_rank_changes_the_output_and_checks_its_argument():
    model = wrapped()
    model.eval()
    ids, _ = batch()
    outputs = []
    for b in range(1, 5):
        peft.set_rank(model, b)
        outputs.append(logits(model, ids))
    assert all(not torch.equal(outputs[i], outputs[i + 1]) for i in range(3))
    for bad in (0, 5, 2.0, True):
        with pytest.raises(ValueError, match=r"set_rank: rank must be an int in 1\.\.4"):
            peft.set_rank(model, bad)
    with pytest.raises(ValueError, match="not a QDyLoRA model"):
        peft.set_rank(tiny_bert(), 1)


# -- wrapping -----------------------------------------------------------------------------------

@pytest.mark.parametrize("base, kind", [("nf4", NF4Linear), ("int4", Int4BaseLinear), ("fp32", nn.Linear)])
def test_wrap_replaces_every_linear_and_trains_only_lora_and_classifier(base, kind):
    model = peft.wrap_qdylora(tiny_bert(), QDyLoraConfig(r_max=3, base=base, target_modules=("query", "value")))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or n.startswith("classifier.") for n in trainable)
    assert {n for n in trainable if n.startswith("classifier.")} == {"classifier.weight", "classifier.bias"}
    assert len([n for n in trainable if "lora_A" in n]) == 4  # query and value of 2 layers
    attention = model.bert.encoder.layer[0].attention
    assert isinstance(attention.self.query, DyLoraLinear) and isinstance(attention.self.query.base_layer, kind)
    assert isinstance(attention.self.key, kind) and isinstance(model.bert.pooler.dense, kind)
    assert type(model.classifier) is nn.Linear
    storage = peft.base_storage(model)
    assert storage["fp32_bytes"] == 4 * 2 * (4 * 64 * 64 + 2 * 64 * 128) + 4 * 64 * 64  # encoder + pooler
    assert storage["ratio"] == 1.0 if base == "fp32" else storage["ratio"] <= 0.16, storage


@pytest.mark.parametrize("make, message", [
    (lambda: QDyLoraConfig(r_max=0), "r_max must be a positive int"),
    (lambda: QDyLoraConfig(base="fp8"), "base must be one of nf4, int4, gguf, gguf-int, fp32"),
    (lambda: QDyLoraConfig(mode="sometimes"), "mode must be one of frozen, all, fixed"),
    (lambda: QDyLoraConfig(dropout=1.0), r"dropout must be in \[0, 1\)"),
    (lambda: QDyLoraConfig(alpha=0), "alpha must be a positive finite number"),
    (lambda: QDyLoraConfig(alpha=float("inf")), "alpha must be a positive finite number"),
    (lambda: QDyLoraConfig(target_modules=()), "target_modules is empty"),
    (lambda: QDyLoraConfig(modules_to_save=("bert.pooler",)), "modules_to_save names single modules"),
    (lambda: peft.wrap_qdylora(tiny_bert(), QDyLoraConfig(target_modules=("qurey",))),
     "target module 'qurey' matches no nn.Linear"),
    (lambda: peft.wrap_qdylora(tiny_bert(), QDyLoraConfig(modules_to_save=("head",))),
     "modules_to_save entry 'head' matches no module"),
    (lambda: peft.wrap_qdylora(wrapped(), QDyLoraConfig()), "wrapped already"),
    (lambda: peft.wrap_qdylora(tiny_bert(), {"r_max": 8}), "config must be a QDyLoraConfig"),
    (lambda: peft.merge_and_unload(wrapped(), rank=9), r"merge_and_unload: rank must be an int in 1\.\.4"),
])
def test_bad_input_gives_one_line_errors(make, message):
    with pytest.raises((TypeError, ValueError), match=message) as e:
        make()
    assert "\n" not in str(e.value)


def test_config_describe_and_dict_round_trip():
    config = QDyLoraConfig(r_max=8, alpha=16, target_modules=("query", "value"), dropout=0.05, base="int4")
    assert QDyLoraConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.describe() == ("DyLoRA ranks 1..8 (frozen), alpha 16, dropout 0.05 on query, value; "
                                 "int4 base (groups of 64)")


# -- merge, save, load --------------------------------------------------------------------------

@pytest.mark.parametrize("base", ["fp32", "nf4"])
def test_merged_model_equals_the_unmerged_one(base):
    model = wrapped(base)
    model.eval()
    ids, _ = batch()
    peft.set_rank(model, 3)
    before = logits(model, ids)
    plain = peft.merge_and_unload(model)
    assert not any(isinstance(m, (DyLoraLinear, NF4Linear)) for m in plain.modules())
    assert not hasattr(plain, "qdylora_config") and "qdylora_step" not in plain.state_dict()
    assert torch.allclose(logits(plain, ids), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("base", ["fp32", "nf4", "int4"])
def test_models_of_other_dtypes_wrap_train_and_merge(base, dtype):
    # The LoRA factors take the adapted layer's dtype, and merging keeps it.
    model = peft.wrap_qdylora(tiny_bert().to(dtype), QDyLoraConfig(r_max=4, base=base))
    ids, labels = batch()
    out = model(input_ids=ids, labels=labels)
    assert out.logits.dtype == dtype
    out.loss.backward()
    assert all(layer.lora_A.dtype == dtype and layer.lora_A.grad is not None for layer in qdylora._dylora_layers(model))
    model.eval()
    plain = peft.merge_and_unload(model)
    assert logits(plain, ids).dtype == dtype
    # Merged and dequantized layers stay frozen like the rest of the base: what trains is what
    # was saved with the adapters (the classifier).
    assert {n for n, p in plain.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}


def test_merged_int4_model_differs_only_by_the_activation_rounding():
    model = wrapped("int4")
    model.eval()
    ids, _ = batch()
    before = logits(model, ids)  # int8 activations in every base product
    after = logits(peft.merge_and_unload(model), ids)  # float activations
    assert (after - before).abs().max() < 0.02 * before.abs().max()


def test_merge_at_a_rank_adds_that_ranks_delta():
    model = wrapped("nf4")
    query = model.bert.encoder.layer[1].attention.self.query
    expected = query.base_layer.dequantize() + (16.0 / 2) * query.lora_B[:, :2].detach() @ query.lora_A[:2].detach()
    plain = peft.merge_and_unload(model, rank=2)
    assert torch.allclose(plain.bert.encoder.layer[1].attention.self.query.weight, expected, atol=1e-7)


def test_adapters_save_and_load_every_rank(tmp_path):
    model = wrapped("nf4")
    model.eval()
    ids, _ = batch()
    path = peft.save_qdylora(model, tmp_path / "adapters.safetensors")
    saved = load_file(path)
    assert saved and all(".lora_" in k or k.startswith("classifier.") for k in saved)
    assert saved["bert.encoder.layer.0.attention.self.query.lora_A"].shape == (4, 64)
    fresh = peft.load_qdylora(tiny_bert(), path)  # same pretrained weights, wrapped from the file's config
    fresh.eval()
    for b in range(1, 5):
        peft.set_rank(model, b)
        peft.set_rank(fresh, b)
        assert torch.equal(logits(fresh, ids), logits(model, ids))
    with pytest.raises(ValueError, match="was saved with"):
        peft.load_qdylora(wrapped("int4"), path)
    # A file of the other method says what it holds.
    meft_file = peft.save_meft_adapters(peft.wrap_meft(tiny_bert()), tmp_path / "meft.safetensors")
    with pytest.raises(ValueError, match=r"^load_qdylora: .*meft.safetensors holds MEFT adapters \(load them with "
                                         r"load_meft_adapters\)"):
        peft.load_qdylora(tiny_bert(), meft_file)
    with pytest.raises(ValueError, match=r"^load_meft_adapters: .* holds QDyLoRA adapters \(load them with load_qdylora\)"):
        peft.load_meft_adapters(tiny_bert(), path)


@pytest.mark.parametrize("base", ["nf4", "int4"])
def test_wrapped_model_state_round_trips_through_safetensors(tmp_path, base):
    model = wrapped(base)
    model.train()
    ids, labels = batch()
    model(input_ids=ids, labels=labels)  # advance the rank draws
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    other = peft.wrap_qdylora(tiny_bert(seed=5), QDyLoraConfig(r_max=4, base=base, dropout=0.0))
    other.load_state_dict(load_file(tmp_path / "model.safetensors"))
    assert int(other.qdylora_step) == 1
    model.eval(), other.eval()
    assert torch.equal(logits(other, ids), logits(model, ids))


# -- the integer base -------------------------------------------------------------------------

def test_int4_group_quantizer_ranges_and_error():
    torch.manual_seed(0)
    w = torch.randn(24, 200) * torch.linspace(0.01, 1, 200)  # groups of very different sizes; a short last group
    codes, multipliers, unit = quantize_int4_groups(w, 64)
    assert codes.dtype == torch.int8 and codes.abs().max() <= 7
    assert multipliers.shape == (24, 4) and multipliers.min() >= 1 and multipliers.max() <= 18
    assert (multipliers.amax(dim=1) == 18).all()  # the group holding the row's absmax
    step = (multipliers.float() * unit[:, None]).repeat_interleave(64, dim=1)[:, :200]
    assert ((codes.float() * step - w).abs() <= step / 2 * (1 + 1e-6)).all()
    assert (codes.float() * step).abs().amax(dim=1).allclose(w.abs().amax(dim=1), rtol=0.08)
    zero_codes, zero_m, zero_unit = quantize_int4_groups(torch.zeros(2, 64))
    assert (zero_codes == 0).all() and (zero_unit == 0).all()


def test_int4_base_products_are_exact_integer_gemms():
    torch.manual_seed(0)
    linear = nn.Linear(192, 40)
    layer = Int4BaseLinear.from_linear(linear)
    q8 = layer.int8_weight()
    assert q8.dtype == torch.int8 and q8.abs().max() <= 126
    x = torch.randn(3, 5, 192, requires_grad=True)
    y = layer(x)
    # Forward: the int32 accumulator equals the int64 product of the same codes.
    rows = x.detach().reshape(15, 192)
    x_codes, x_scale = functional.quantize_absmax(rows, 8, "nearest", per_row=True)
    acc, scale = layer.integer_product(rows)
    assert torch.equal(acc.long(), x_codes.long() @ q8.long().T) and torch.equal(scale, x_scale)
    expected = (acc.float() * x_scale[:, None] * layer.row_unit + linear.bias.detach()).reshape(3, 5, 40)
    assert torch.allclose(y, expected, rtol=1e-6, atol=1e-6)
    # Backward: dx from the stochastically rounded gradient rows, times the same int8 matrix.
    g = torch.randn(3, 5, 40)
    torch.manual_seed(11)
    y.backward(g)
    torch.manual_seed(11)
    g_codes, g_scale = functional.quantize_absmax(g.reshape(15, 40) * layer.row_unit, 8, "stochastic", per_row=True)
    exact = (g_codes.long() @ q8.long()).double() * g_scale.double()[:, None]
    assert torch.allclose(x.grad.reshape(15, 192).double(), exact, rtol=1e-6, atol=1e-7)
    # And it is close to the float product with the dequantized weight.
    w = layer.dequantize()
    rel = (y - nn.functional.linear(x.detach(), w, linear.bias.detach())).norm() / y.norm()
    assert rel < 0.02


def test_int4_base_state_dict_round_trip(tmp_path):
    layer = Int4BaseLinear.from_linear(nn.Linear(100, 30))
    save_file(layer.state_dict(), tmp_path / "int4.safetensors")
    fresh = Int4BaseLinear(100, 30)
    fresh.load_state_dict(load_file(tmp_path / "int4.safetensors"))
    x = torch.randn(4, 100)
    assert torch.equal(fresh(x), layer(x))
    assert layer.storage_bytes() <= 0.16 * 4 * 100 * 30


# -- the driver -----------------------------------------------------------------------------------

WORDS = {"pos": "good great superb lovely fine".split(), "neg": "bad awful dull boring weak".split()}


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    """A saved tiny BERT with a word-level vocabulary and a CSV of two-class snippets."""
    path = tmp_path_factory.mktemp("qdylora")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was"] + WORDS["pos"] + WORDS["neg"]
    transformers.BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(path / "model")
    tiny_bert().bert.save_pretrained(path / "model")
    g = torch.Generator().manual_seed(0)
    rows = ["review,sentiment"]
    for i in range(200):
        label = "pos" if i % 2 else "neg"
        picks = [WORDS[label][j] for j in torch.randint(0, 5, (2,), generator=g).tolist()]
        rows.append(f"the film was {picks[0]} {picks[1]},{label}")
    (path / "data.csv").write_text("\n".join(rows) + "\n")
    return path


def finetune(task, out, *extra):
    from intcore.drivers import finetune as driver

    return driver.cli(["--model", str(task / "model"), "--data", str(task / "data.csv"), "--text-column", "review",
                       "--label-column", "sentiment", "--epochs", "1", "--batch-size", "16", "--lr", "1e-2",
                       "--output", str(out), "--no-progress", *extra])


def test_finetune_qdylora_scores_every_rank_and_lora_runs_on_the_same_base(tiny_task, tmp_path, capsys):
    out = tmp_path / "qdylora"
    assert finetune(tiny_task, out, "--method", "qdylora", "--rank-max", "3", "--base", "int4",
                    "--recipes", "fp32,int8", "--target-modules", "query,value", "--rank-mode", "all") == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    for run in ("qdylora-all-fp32", "qdylora-all-int8"):  # mode all is in the run names
        info = results["recipes"][run]["qdylora"]
        assert [row["rank"] for row in info["ranks"]] == [1, 2, 3]
        assert all(0 <= row["test_accuracy"] <= 1 for row in info["ranks"])
        assert info["base_storage"]["ratio"] <= 0.16 and info["config"]["target_modules"] == ["query", "value"]
        assert info["config"]["mode"] == "all"
        assert (out / f"{run}-ranks.png").stat().st_size > 1000
        assert set(load_file(info["adapters"])) >= {"bert.encoder.layer.0.attention.self.query.lora_A",
                                                    "classifier.weight"}
    assert "rank  test acc" in printed and "base weights:" in printed and "x their" in printed
    out = tmp_path / "lora"
    assert finetune(tiny_task, out, "--method", "lora", "--rank", "2", "--base", "nf4", "--recipe", "fp32") == 0
    info = json.loads((out / "results.json").read_text())["recipes"]["lora-fp32"]["lora"]
    assert info["config"]["mode"] == "fixed" and info["config"]["r_max"] == 2 and info["config"]["base"] == "nf4"


@pytest.mark.parametrize("extra, message", [
    (["--method", "qdylora", "--rank-max", "0"], "--rank-max must be at least 1"),
    (["--method", "lora", "--target-modules", "qurey"], "target module 'qurey' matches no nn.Linear"),
])
def test_finetune_bad_input_gives_one_line_errors(tiny_task, tmp_path, capsys, extra, message):
    assert finetune(tiny_task, tmp_path / "bad", "--recipe", "fp32", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
