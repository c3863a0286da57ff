"""A GGUF file's own Q4_0/Q4_1 blocks as the frozen base of LoRA/QDyLoRA (intcore.gguf.q4_blocks,
intcore.nn.GGUFQ4Linear) and the adapters written back as GGUF LoRA files (intcore.gguf.lora_adapter)."""

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

from intcore.gguf import attach_q4_blocks, load_causal_lm, q4_blocks, read_q4_tensors  # noqa: E402
from intcore.gguf.q8_blocks import quantize_q8_blocks  # noqa: E402
from intcore.gguf.lora_adapter import read_lora_adapter, write_lora_adapter  # noqa: E402
from intcore.nn.gguf_q4 import GGUFQ4Linear  # noqa: E402
from intcore.peft import qdylora  # noqa: E402
from tiny_gguf import HEADS, KV_HEADS, rotary_permute, write_tiny_llama  # noqa: E402


@pytest.fixture(scope="module")
def tiny_q4(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf-q4") / "tiny-q4.gguf"
    write_tiny_llama(path, all_q4=True)
    model, tokenizer = load_causal_lm(path)
    attach_q4_blocks(model, path)
    return path, model, tokenizer


def test_blocks_dequantize_as_gguf_does_bit_for_bit(tiny_q4):
    path, model, _ = tiny_q4
    reader = gguf.GGUFReader(str(path))
    arch, tensors = read_q4_tensors(path)
    assert arch == "llama" and len(tensors) == 14 and {t.format for t in tensors.values()} == {"Q4_0", "Q4_1"}
    for t in reader.tensors:
        module = q4_blocks.module_name(t.name)
        if module is None:
            continue
        theirs = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        if t.name.split(".")[2] in ("attn_q", "attn_k"):  # stored rotary-permuted: compare in file order
            ours = q4_blocks.dequantize(tensors[module]).numpy()
            heads = HEADS if t.name.split(".")[2] == "attn_q" else KV_HEADS
            ours = rotary_permute(ours, heads)
        else:
            ours = q4_blocks.dequantize(tensors[module]).numpy()
        assert np.array_equal(ours.view(np.int32), theirs.view(np.int32)), t.name
    # attach_q4_blocks checked each layer against transformers' own loading too.
    layer = model.model.layers[0].self_attn.q_proj
    assert torch.equal(GGUFQ4Linear.from_linear(layer).dequantize(), layer.weight)


def test_names_round_trip():
    for name in ("blk.7.attn_q.weight", "blk.0.ffn_down.weight"):
        assert q4_blocks.tensor_name(q4_blocks.module_name(name)) == name
    assert q4_blocks.module_name("token_embd.weight") is None
    assert q4_blocks.tensor_name("lm_head") is None


def test_integer_products_are_exact_per_block(tiny_q4):
    _, model, _ = tiny_q4
    for layer in (model.model.layers[0].mlp.gate_proj, model.model.layers[1].self_attn.o_proj):  # Q4_1, Q4_0
        base = GGUFQ4Linear.from_linear(layer, integer=True)
        x = torch.randn(5, 3, base.in_features)
        y = base(x)
        # int64 reference: the same 8-bit activation blocks, every block's dot product in integers
        xq = quantize_q8_blocks(x.reshape(15, -1))
        q = q4_blocks.unpack_codes(base.codes).long() - (8 if base.format == "Q4_0" else 0)
        blocks = (xq.codes.long()[:, None] * q.reshape(1, q.shape[0], -1, 32)).sum(3)
        expected = (blocks.double() * (xq.scales[:, None] * base.scales.float()[None]).double()).sum(2)
        if base.mins is not None:
            expected = expected + xq.sums.double() @ base.mins.double().t()
        # one float32 rounding of the exact sum: within half a float32 ulp (2^-24 relative)
        torch.testing.assert_close(y.reshape(15, -1).double(), expected, rtol=2.0**-24, atol=1e-12)
        # rows are independent, across the row chunks of the batched GEMM too; no rows, no output
        many = torch.randn(1100, base.in_features)
        torch.testing.assert_close(base(many), torch.cat([base(many[:7]), base(many[7:])]), rtol=1e-6, atol=1e-6)
        assert base(many[:0]).shape == (0, base.out_features)
        # and close to the float product with the dequantized weight (8-bit activations)
        ref = x @ layer.weight.t()
        assert (y - ref).norm() / ref.norm() < 0.01
        x.requires_grad_()
        base(x).sum().backward()
        torch.testing.assert_close(x.grad, torch.ones(5, 3, base.out_features) @ layer.weight)


def wrapped(model, base, mode="frozen", r_max=4):
    config = qdylora.QDyLoraConfig(r_max=r_max, alpha=8, target_modules=qdylora.LLAMA_LINEARS, base=base, mode=mode,
                                   modules_to_save=(), skip_modules=("lm_head",), dropout=0.0)
    return qdylora.wrap_qdylora(copy.deepcopy(model), config)


@pytest.mark.parametrize("base", ["gguf", "gguf-int"])
def test_qdylora_trains_on_the_gguf_blocks(tiny_q4, base):
    _, model, tokenizer = tiny_q4
    m = wrapped(model, base)
    bases = [x for x in m.modules() if isinstance(x, GGUFQ4Linear)]
    assert len(bases) == 14 and all(b.integer == (base == "gguf-int") for b in bases)
    assert isinstance(m.lm_head, torch.nn.Linear) and not m.lm_head.weight.requires_grad
    storage = qdylora.base_storage(m)
    assert storage["bytes"] == sum(b.storage_bytes() for b in bases)
    ids = torch.randint(0, 263, (4, 12), generator=torch.Generator().manual_seed(0))
    trainable = [p for p in m.parameters() if p.requires_grad]
    assert trainable and all(n.split(".")[-1].startswith("lora_") for n, p in m.named_parameters() if p.requires_grad)
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    m.train()
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = m(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_wrapping_a_layer_without_blocks_is_refused(tiny_q4, tmp_path):
    path = tmp_path / "mixed.gguf"
    write_tiny_llama(path)  # q, o and down in Q8_0
    model, _ = load_causal_lm(path)
    attach_q4_blocks(model, path)
    with pytest.raises(ValueError, match="q_proj has none"):
        wrapped(model, "gguf")


def test_lora_adapter_round_trips_and_matches_the_merged_weights(tiny_q4, tmp_path):
    _, model, _ = tiny_q4
    m = wrapped(model, "gguf", mode="all")
    with torch.no_grad():
        for layer in m.modules():
            if hasattr(layer, "lora_B"):
                layer.lora_B.normal_()
    qdylora.set_rank(m, 3)
    out = write_lora_adapter(m, tmp_path / "adapter.gguf", "llama", rank=3)
    meta, tensors = read_lora_adapter(out)
    assert meta == {"architecture": "llama", "type": "adapter", "adapter_type": "lora", "alpha": 8.0}
    assert len(tensors) == 2 * 14
    merged = qdylora.merge_and_unload(copy.deepcopy(m), rank=3)
    reader = gguf.GGUFReader(str(tiny_q4[0]))
    stored = {t.name: np.array(gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)) for t in reader.tensors}
    for name in ("blk.0.attn_q.weight", "blk.1.attn_k.weight", "blk.0.ffn_down.weight"):
        a, b = tensors[f"{name}.lora_a"], tensors[f"{name}.lora_b"]
        assert a.shape[0] == 3 and b.shape[1] == 3
        # What llama.cpp computes in its own row order: W + (alpha / r) B A ...
        served = torch.from_numpy(stored[name]) + (8.0 / 3) * torch.from_numpy(b) @ torch.from_numpy(a)
        # ... is our merged weight, in that order.
        ours = merged.get_submodule(q4_blocks.module_name(name)).weight.detach()
        kind = name.split(".")[2]
        if kind in ("attn_q", "attn_k"):
            ours = torch.from_numpy(rotary_permute(ours.numpy(), HEADS if kind == "attn_q" else KV_HEADS))
        torch.testing.assert_close(served, ours, rtol=1e-5, atol=1e-5)


def test_q8_blocks_equal_gguf_py():
    """Codes and fp16 scales bit for bit gguf-py's Q8_0 (ggml's reference quantizer), ties at .5
    included; s is fp16(d * sum q); an all-zero block gets d = 0 and codes 0."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 256, generator=g) * torch.logspace(-3, 3, 7)[:, None]
    x[0, :32] = 0
    x[1, :32] = (torch.arange(32) - 16) / 2  # amax 8: 127 x / 8 puts x / d on or next to .5 ties
    x[2, :32] = torch.linspace(-127, 127, 32).round() / 127 * 3  # exact multiples of d
    ours = quantize_q8_blocks(x)
    raw = gguf.quants.quantize(x.numpy(), gguf.GGMLQuantizationType.Q8_0).reshape(7, 8, 34)
    d = torch.from_numpy(raw[..., :2].copy().view(np.float16)).float().squeeze(-1)
    codes = torch.from_numpy(raw[..., 2:].copy().view(np.int8))
    assert torch.equal(ours.codes, codes) and torch.equal(ours.scales, d)
    d32 = x.reshape(7, 8, 32).abs().amax(-1) / 127  # s takes d before its rounding to fp16, as ggml does
    assert torch.equal(ours.sums, (d32 * codes.float().sum(-1)).half().float())
    assert ours.scales[0, 0] == 0 and not ours.codes[0, 0].any()
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_q8_blocks(torch.zeros(3, 40))


def test_the_llamacpp_benchmarks_two_q8_roundings_differ_only_at_halves(tiny_q4):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from llamacpp_lora import q8_activation_logits, q8_round_trip, transformers_logits

    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(0)) * 4
    x[0, :32] = torch.tensor([127.0, 2.5, -2.5, 0.5, -0.5, 3.25] + [1.0] * 26)  # d = 1: exact halves
    reference = quantize_q8_blocks(x)
    away, even = q8_round_trip(x, "away"), q8_round_trip(x, "even")
    assert torch.equal(away, (reference.codes.float() * reference.scales[..., None]).reshape(x.shape))
    assert away[0, 1:6].tolist() == [3.0, -3.0, 1.0, -1.0, 3.0] and even[0, 1:6].tolist() == [2.0, -2.0, 0.0, -0.0, 3.0]
    halves = (x * 127 / x.reshape(3, 2, 32).abs().amax(-1).repeat_interleave(32, 1)).frac().abs() == 0.5
    assert torch.equal(away[~halves], even[~halves]) and halves.sum() == 4

    model = copy.deepcopy(tiny_q4[1])
    ids = [[5, 9, 200, 17, 3, 44, 101, 7]]
    plain = transformers_logits(model.eval(), ids)
    rounded = q8_activation_logits(model, ids, "even")
    assert not np.array_equal(plain, rounded)
    assert np.array_equal(transformers_logits(model, ids), plain)  # the rounding hooks are removed again
