"""Q-BERT: the group-wise quantizer, code packing, integer execution against the fake-quantized
float model, bit assignment against brute force, config files, save/load, bad input."""

import copy
import itertools

import pytest
import torch
from torch import nn

import intcore
from intcore import qbert
from intcore.nn.group_quantized import GroupQuantizedEmbedding, GroupQuantizedLinear, IntegerGroupLinear
from intcore.qbert import quantizer

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("bits", quantizer.ALLOWED_BITS)
@pytest.mark.parametrize("groups", [1, 3, 5, 64])
def test_group_quantizer_error_and_packing(bits, groups):
    w = torch.randn(12, 11) * torch.linspace(0.1, 3, 12)[:, None]
    codes = quantizer.quantize_groups(w, bits, groups)
    assert codes.codes.dtype == torch.uint8 and int(codes.codes.max()) <= 2**bits - 1
    # Inside the range, the error is at most half a step of the row's group.
    err = (codes.dequantize() - w).abs()
    assert bool((err <= codes.row_step()[:, None] / 2 * (1 + 1e-5) + 1e-7).all())
    packed = quantizer.pack_codes(codes.codes, bits)
    assert torch.equal(quantizer.unpack_codes(packed, bits, 11), codes.codes)
    per_byte = 1 if bits > 4 else (2 if bits > 2 else 4)
    assert packed.shape == (12, -(-11 // per_byte))


def test_groups_have_their_own_ranges_and_percentile_clips():
    w = torch.cat([torch.randn(4, 8), 100 * torch.randn(4, 8)])
    one, two = quantizer.quantize_groups(w, 4, 1), quantizer.quantize_groups(w, 4, 2)
    assert (two.dequantize()[:4] - w[:4]).abs().max() < (one.dequantize()[:4] - w[:4]).abs().max() / 10
    w2 = torch.randn(1, 10000)
    w2[0, 0] = 1000.0
    clipped = quantizer.quantize_groups(w2, 4, 1, percentile=0.1)
    assert float(clipped.step[0]) < 1.0


def test_straight_through_gradient():
    w = torch.randn(6, 5, requires_grad=True)
    quantizer.fake_quantize(w, 3, 2).mul(torch.arange(30.0).reshape(6, 5)).sum().backward()
    assert torch.equal(w.grad, torch.arange(30.0).reshape(6, 5))


@pytest.mark.parametrize("padding_idx", [None, 0, -1])
def test_embedding_quantizes_rows_it_looks_up_like_the_whole_table(padding_idx):
    """Quantizing only the looked-up rows (each row is a group) gives the whole table's values
    and gradient, padding row included."""
    torch.manual_seed(0)
    embedding = nn.Embedding(50, 12, padding_idx=padding_idx)
    quantized = GroupQuantizedEmbedding.from_embedding(embedding, 3)
    ids = torch.tensor([[0, 7, 7, 49], [3, 0, 49, 12]])
    out = quantized(ids)
    table = quantizer.fake_quantize(embedding.weight, 3, 50)
    reference = nn.functional.embedding(ids, table, embedding.padding_idx)
    assert torch.equal(out, reference)
    grad = torch.randn_like(out)
    (dw,) = torch.autograd.grad(out, embedding.weight, grad)
    (dw_reference,) = torch.autograd.grad(reference, embedding.weight, grad)
    assert torch.equal(dw, dw_reference)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_integer_linear_equals_fake_quantized_float(bits):
    torch.manual_seed(0)
    linear = nn.Linear(70, 24)
    qat = GroupQuantizedLinear.from_linear(linear, bits, groups=6)
    frozen = IntegerGroupLinear.freeze(qat)
    x = torch.randn(3, 9, 70)
    with torch.no_grad():
        expected, got = qat(x).double(), frozen(x).double()
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
    assert frozen.storage_bytes() == quantizer.storage_bytes(24, 70, bits, 6)


def _brute_force(omegas, errors, costs, budget):
    best = None
    for bits in itertools.product(*[sorted(e) for e in errors]):
        if sum(c[b] for c, b in zip(costs, bits)) <= budget:
            value = sum(o * e[b] for o, e, b in zip(omegas, errors, bits))
            best = min(best, (value, bits)) if best else (value, bits)
    return best[1]


def test_bit_assignment_is_the_exact_optimum():
    g = torch.Generator().manual_seed(0)
    allowed = (2, 3, 4, 8)
    for trial in range(30):
        n = 5
        omegas = (torch.rand(n, generator=g) * 10).tolist()
        sizes = torch.randint(1, 4, (n,), generator=g).tolist()
        errors = [{b: float(s * 4.0 ** (-b) * (1 + 0.1 * torch.rand(1, generator=g))) for b in allowed} for s in sizes]
        costs, budget = qbert.average_bits_budget(sizes, allowed, 2 + 4 * float(torch.rand(1, generator=g)))
        got = qbert.assign_bits(omegas, errors, costs, budget)
        expect = _brute_force(omegas, errors, costs, budget)
        value = lambda bits: sum(o * e[b] for o, e, b in zip(omegas, errors, bits))  # noqa: E731
        assert value(got) == pytest.approx(value(expect))


def test_sensitive_blocks_get_more_bits_and_reversal():
    errors = [{b: 4.0 ** -b for b in (2, 4, 8)}] * 4
    costs, budget = qbert.average_bits_budget([1] * 4, (2, 4, 8), 4)
    bits = qbert.assign_bits([100, 1, 10, 0.1], errors, costs, budget)
    assert bits[0] >= bits[2] >= bits[1] >= bits[3]
    rev = qbert.reversed_assignment(bits, [100, 1, 10, 0.1])
    assert sorted(rev) == sorted(bits) and rev[3] == bits[0] and rev[0] == bits[3]
    with pytest.raises(ValueError, match="below the smallest configuration"):
        qbert.assign_bits([1.0] * 4, errors, costs, 7)


@pytest.fixture(scope="module")
def bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=120, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                                     intermediate_size=96, max_position_embeddings=32, num_labels=2)
    return transformers.BertForSequenceClassification(config).eval()


def test_bert_quantize_freeze_save_load(bert, tmp_path):
    config = qbert.QBertConfig(block_bits=(8, 3, 2), groups=4)
    ids = torch.randint(1, 120, (4, 12))
    qat = intcore.convert(copy.deepcopy(bert), config)
    assert type(qat.classifier) is nn.Linear  # the classifier stays float
    frozen = qbert.freeze(copy.deepcopy(qat))
    with torch.no_grad():
        a, b = qat(input_ids=ids).logits, frozen(input_ids=ids).logits
    assert (a - b).abs().max() < 1e-4
    assert qbert.weight_bytes(frozen) < qbert.weight_bytes(bert) / 3
    path = qbert.save_quantized(frozen, config, tmp_path / "model.safetensors")
    loaded, loaded_config = qbert.load_quantized(copy.deepcopy(bert), path)
    assert loaded_config == config
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, b)
    assert "Q-BERT 2-bit (integer)" in intcore.summary(frozen)


def test_config_file_round_trip_and_bad_input(bert, tmp_path):
    config = qbert.QBertConfig(block_bits=(8, 4, 2), percentile=0.1)
    assert qbert.QBertConfig.load(config.save(tmp_path / "c.json")) == config
    with pytest.raises(ValueError, match="bits must be one of"):
        qbert.QBertConfig(block_bits=(8, 1, 2))
    with pytest.raises(ValueError, match="3 in bert.encoder.layer"):
        qbert.quantize_model(copy.deepcopy(bert), qbert.QBertConfig(block_bits=(8, 8)))
    with pytest.raises(ValueError, match="cannot find the encoder blocks of Sequential"):
        qbert.quantize_model(nn.Sequential(nn.Linear(2, 2)), config)
    (tmp_path / "bad.json").write_text('{"block_bits": [8], "colour": 1}')
    with pytest.raises(ValueError, match="unknown keys"):
        qbert.QBertConfig.load(tmp_path / "bad.json")


def test_save_refuses_what_load_could_not_rebuild(bert, tmp_path):
    config = qbert.QBertConfig(block_bits=(8, 3, 2))
    qat = intcore.convert(copy.deepcopy(bert), config)
    path = tmp_path / "model.safetensors"
    with pytest.raises(ValueError, match=r"^save_quantized: the model is not frozen .*call qbert.freeze"):
        qbert.save_quantized(qat, config, path)
    frozen = qbert.freeze(qat)
    for other, message in [
        (qbert.QBertConfig(block_bits=(8, 3, 4)), r"encoder.layer.2.\S+ holds 2-bit codes, but the config gives it 4"),
        (qbert.QBertConfig(block_bits=(8, 3)), "the config gives bits for 2 blocks"),
        (qbert.QBertConfig(block_bits=(8, 3, 2), skip=()), "classifier is a float Linear, but the config quantizes it"),
    ]:
        with pytest.raises(ValueError, match=message):
            qbert.save_quantized(frozen, other, path)
    with pytest.raises(ValueError, match="is a float Embedding, but the config quantizes it"):
        qbert.save_quantized(copy.deepcopy(bert), config, path)
    assert not path.exists()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_frozen_model_cast_keeps_float32_scales(bert, dtype):
    frozen = qbert.freeze(intcore.convert(copy.deepcopy(bert), qbert.QBertConfig(block_bits=(8, 3, 2))))
    ids = torch.randint(1, 120, (2, 9))
    with torch.no_grad():
        reference = frozen(input_ids=ids).logits
        cast = copy.deepcopy(frozen).to(dtype)
        assert {t.dtype for n, t in cast.named_buffers() if n.endswith((".step", ".lo"))} == {torch.float32}
        logits = cast(input_ids=ids).logits
        assert logits.dtype == dtype
        assert (logits.double() - reference.double()).abs().max() < (0.05 if dtype != torch.float64 else 1e-5)
        assert cast.float()(input_ids=ids).logits.dtype == torch.float32
        # An empty batch through the frozen layers (BERT's own attention cannot take one).
        embedding = frozen.bert.embeddings.word_embeddings
        assert embedding(ids[:0]).shape == (0, 9, embedding.embedding_dim)
        query = frozen.bert.encoder.layer[0].attention.self.query
        assert query(torch.zeros(0, query.in_features)).shape == (0, query.out_features)
    assert not any("output_dtype" in k for k in frozen.state_dict())
