"""MEFT (intcore.peft.meft) and its reversible coupling (intcore.nn.reversible) on tiny random
BERTs: wiring, gradient parity with ordinary backprop, exact integer rebuild, bad input,
adapter files, and the driver."""

import copy
import json

import pytest
import torch

import intcore
from intcore.nn import reversible
from intcore.peft import MeftConfig, audit_reconstruction, load_meft_adapters, save_meft_adapters, wrap_meft
from intcore.peft.adapters import trainable_parameters

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

VARIANTS = ["meft1", "meft2", "meft3"]


def tiny_bert(layers: int = 4, dtype=torch.float32, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=32, num_labels=2)
    return transformers.BertForSequenceClassification(config).to(dtype)


def batch(rows: int = 3, length: int = 12):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 100, (rows, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, length * 2 // 3:] = 0  # one padded row, so the attention mask matters
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.arange(rows) % 2}


def wrapped(model, seed: int = 1, **config):
    torch.manual_seed(seed)  # adapters draw their init from the generator: same seed, same adapters
    return wrap_meft(copy.deepcopy(model), MeftConfig(**config))


def gradients(model, inputs, seed: int = 5) -> dict:
    model.train()
    torch.manual_seed(seed)  # same dropout bits in both runs compared
    model(**inputs).loss.backward()
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def relative_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(((a[n] - b[n]).abs().max() / b[n].abs().max()).item() for n in a)


def zero_adapters(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adapter_" in name:
                p.zero_()


def test_only_adapters_and_the_head_train_and_pretrained_names_stay():
    model = tiny_bert()
    names = {n for n, _ in model.named_parameters()}
    m = wrapped(model, variant="meft1")
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all("adapter_" in n or n.startswith(("classifier.", "bert.pooler.")) for n in trainable)
    assert names <= {n for n, _ in m.named_parameters()}  # a pretrained state_dict still loads
    # meft1: two d -> 8 -> d adapters per layer (64*8+8 + 8*64+64 each; none for the top G, whose stream the
    # readout drops), the pooler and the classifier
    assert trainable_parameters(m)[0] == 7 * (64 * 8 + 8 + 8 * 64 + 64) + 64 * 64 + 64 + 64 * 2 + 2
    strict = wrapped(model, variant="meft1", train=("classifier",))
    assert not any(p.requires_grad for p in strict.bert.pooler.parameters())
    assert "trainable params:" in intcore.peft.print_trainable_parameters(m)


def test_adapter_method_with_zero_adapters_is_the_original_bit_for_bit():
    model = tiny_bert().eval()
    m = wrapped(model, variant="adapter").eval()
    zero_adapters(m)
    inputs = batch()
    assert torch.equal(m(**inputs).logits, model(**inputs).logits)


@pytest.mark.parametrize("variant", VARIANTS)
def test_coupling_reduces_to_the_pretrained_layers(variant):
    # The scale on the stream each layer overwrites is what keeps MEFT near the pretrained
    # model; with it at 2^-40 and the adapters at zero, the coupled encoder (read from the
    # stream that carries the last layer's output) is the pretrained model up to 2^-40.
    model = tiny_bert(dtype=torch.float64).eval()
    tiny = 2.0**-40
    scales = {"meft1": dict(lam=tiny), "meft2": dict(beta=tiny), "meft3": dict(lam=tiny, beta=tiny)}[variant]
    m = wrapped(model, variant=variant, readout="last", **scales).eval()
    zero_adapters(m)
    inputs = batch()
    expected = model(**inputs).logits
    assert torch.allclose(m(**inputs).logits, expected, rtol=0, atol=1e-9 * expected.abs().max().item())


@pytest.mark.parametrize("readout", ["last", "mean"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_reversible_backward_gradients_equal_ordinary_backprop(variant, readout):
    model = tiny_bert(dtype=torch.float64)
    inputs = batch()
    ordinary = gradients(wrapped(model, variant=variant, readout=readout, rev_layers=0), inputs)
    assert all(g.abs().max() > 0 for g in ordinary.values())
    for rev_layers in (None, 2):  # all layers reversible; the lowest two, the rest ordinary
        rebuilt = gradients(wrapped(model, variant=variant, readout=readout, rev_layers=rev_layers), inputs)
        assert relative_difference(rebuilt, ordinary) < 1e-8


def test_integer_streams_backward_matches_ordinary_backprop_of_the_float_coupling():
    # Straight-through rounding: on a fine grid the gradients are the float coupling's.
    model = tiny_bert(dtype=torch.float64)
    inputs = batch()
    ordinary = gradients(wrapped(model, variant="meft1", lam=0.125, rev_layers=0), inputs)
    rebuilt = gradients(wrapped(model, variant="meft1", integer=True, frac_bits=36), inputs)
    assert relative_difference(rebuilt, ordinary) < 1e-6


@pytest.mark.parametrize("variant", VARIANTS)
def test_integer_rebuild_is_bit_exact_through_six_layers_of_an_int16_backbone(variant):
    model = tiny_bert(layers=6)
    m = wrapped(model, variant=variant, integer=True)
    intcore.convert(m, "int16", skip="classifier")
    m.train()  # dropout and stochastic rounding both replayed
    with audit_reconstruction(m) as audit:
        m(**batch())
    assert len(audit.layers) == 6 and all(layer["exact"] for layer in audit.layers)
    # and the reversible backward runs on it
    m(**batch()).loss.backward()
    grads = [p.grad for n, p in m.named_parameters() if "adapter_" in n]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_float_rebuild_error_grows_down_the_stack():
    m = wrapped(tiny_bert(layers=4), variant="meft1")
    with audit_reconstruction(m) as audit:
        m(**batch())
    errors = [layer["rms_rel_error"] for layer in audit.layers]
    assert not any(layer["exact"] for layer in audit.layers)
    assert errors[0] > errors[-1] and errors[-1] < 1e-4  # dividing by lambda = 0.1 at every layer


def test_fixed_point_coupling_on_its_own_is_exact_and_its_grid_refines():
    torch.manual_seed(0)
    w = torch.randn(8, 8, requires_grad=True)
    c = reversible.Coupling(f=lambda x: torch.tanh(x @ w), g=lambda y: torch.sin(y), lam=0.125, beta=0.5, swap=True,
                            params=(w,))
    x = torch.randn(5, 8)
    errors = reversible.reconstruction_errors([c] * 10, x, x, fixed_point=24)
    assert all(e["exact"] for e in errors)
    assert reversible.fixed_point_bits(10, 0.125, 0.5, True, 24) == 24 + 5 * 3 + 5 * 1


def test_meft_memory_is_the_output_streams():
    model = tiny_bert()
    inputs = batch(rows=4, length=16)
    ordinary = wrapped(model, variant="meft1", rev_layers=0).train()
    reversible_model = wrapped(model, variant="meft1").train()
    held = [intcore.memory.measure_step(m, lambda m=m: m(**inputs).loss) for m in (ordinary, reversible_model)]
    stream = 4 * 16 * 64 * 4  # one float32 hidden state
    rng_states = 4 * 2 * torch.get_rng_state().numel()  # one CPU generator state per F and G
    # The two output streams, the generator states, and the mask and the classifier head (a few KB).
    assert 2 * stream + rng_states < held[1].activations < 2 * stream + rng_states + 8192
    assert held[0].activations > 10 * held[1].activations
    # The backward holds one recomputed layer on top.
    assert held[1].activations < held[1].peak_activations < held[0].activations


@pytest.mark.parametrize("make, message", [
    (lambda: MeftConfig(lam=0), "MeftConfig.lam must be a positive finite number"),
    (lambda: MeftConfig(beta=float("nan")), "MeftConfig.beta must be a positive finite number"),
    (lambda: MeftConfig(integer=True, lam=0.1), "MeftConfig.lam (integer streams) must be a power of two"),
    (lambda: MeftConfig(variant="meft4"), "MeftConfig.variant must be one of meft1, meft2, meft3, adapter"),
    (lambda: MeftConfig(variant="adapter", integer=True), "variant 'adapter' has no coupling"),
    (lambda: MeftConfig(rev_layers=-1), "MeftConfig.rev_layers must be None or an int >= 0"),
    (lambda: MeftConfig(readout="max"), "MeftConfig.readout must be one of mean, last"),
    (lambda: wrap_meft(torch.nn.Linear(4, 4)), "cannot find the encoder layers of Linear"),
    (lambda: wrap_meft(tiny_bert(), MeftConfig(rev_layers=5)), "rev_layers 5 exceeds the 4 layers"),
    (lambda: wrap_meft(wrap_meft(tiny_bert())), "BertForSequenceClassification is already wrapped"),
    (lambda: wrap_meft(tiny_bert(layers=6), MeftConfig(variant="meft3", integer=True, frac_bits=40)),
     "refine the fixed-point grid to 2^-58"),
    (lambda: reversible.Coupling(f=abs, g=abs, lam=0.0, beta=1.0, swap=False), "Coupling.lam must be a positive"),
    (lambda: wrap_meft(tiny_bert(), MeftConfig(train=("classifer",))),
     "wrap_meft: train entry 'classifer' matches no module of the model"),
    (lambda: wrap_meft(tiny_bert())(**batch(), output_hidden_states=True),
     "MeftEncoder: output_hidden_states=True is not supported"),
])
def test_bad_input_is_a_one_line_error(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("make, message", [
    (lambda: MeftConfig(dropout="0.1"), "MeftConfig.dropout must be a number, got '0.1'"),
    (lambda: wrap_meft("bert"), "wrap_meft: model must be an nn.Module, got str"),
])
def test_wrong_types_are_named(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_model_without_bert_layers_is_refused_by_name():
    class Encoderless(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Module()
            self.encoder.layer = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    with pytest.raises(ValueError, match="cannot find the encoder layers of Encoderless"):
        wrap_meft(Encoderless())


def test_adapter_file_round_trip(tmp_path):
    model = tiny_bert().eval()
    m = wrapped(model, variant="meft3", integer=True)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)  # as if trained
    path = save_meft_adapters(m, tmp_path / "meft3.safetensors")
    restored = load_meft_adapters(copy.deepcopy(model), path).eval()
    assert intcore.peft.meft.meft_encoder(restored).meft_config == MeftConfig(variant="meft3", integer=True)
    inputs = batch()
    assert torch.equal(restored(**inputs).logits, m.eval()(**inputs).logits)


def test_finetune_driver_runs_meft_float_and_integer(tmp_path):
    from intcore.drivers import finetune

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "great", "bad", "awful", "film"]
    model_dir = tmp_path / "model"
    transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(model_dir)
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2,
                                                   num_attention_heads=2, intermediate_size=64,
                                                   max_position_embeddings=16)).save_pretrained(model_dir)
    rows = ["text,label"] + [f"film {'good great' if i % 2 else 'bad awful'},{i % 2}" for i in range(80)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    args = ["--model", str(model_dir), "--data", str(tmp_path / "data.csv"), "--epochs", "1", "--batch-size", "16",
            "--lr", "1e-3", "--no-progress", "--method", "meft1", "--recipes", "fp32,int16", "--output", str(out)]
    assert finetune.cli(args) == 0
    results = json.loads((out / "results.json").read_text())["recipes"]
    assert set(results) == {"meft1-fp32", "meft1-int16"}
    assert all(layer["exact"] for layer in results["meft1-int16"]["meft"]["reconstruction"])
    assert not any(layer["exact"] for layer in results["meft1-fp32"]["meft"]["reconstruction"])
    assert finetune.cli(args[:-2] + ["--rev-layers", "3", "--output", str(tmp_path / "bad")]) == 2
