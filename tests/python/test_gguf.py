"""intcore.gguf: GGUF files checked from their header and loaded as float transformers models.

The tests write a tiny llama GGUF themselves (2 blocks, hidden size 64, a byte-level BPE
vocabulary of 263 tokens), laid out the way llama.cpp's converter lays one out: q and k rows
permuted for its rotary embedding, norms in F32, linear weights in Q8_0, Q4_0 and Q4_1.
"""

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

from gguf import GGMLQuantizationType  # noqa: E402
from tokenizers.pre_tokenizers import ByteLevel  # noqa: E402

from intcore import assets  # noqa: E402
from intcore.gguf import GGUFError, describe, is_gguf, load_causal_lm  # noqa: E402

HIDDEN, FFN, HEADS, KV_HEADS, BLOCKS = 64, 128, 4, 2, 2
HEAD_DIM = HIDDEN // HEADS
RMS_EPS = 1e-5
MERGES = ["h e", "l l", "he ll", "o r", "Ġ w", "Ġw or"]
EOS = "<|endoftext|>"
TOKENS = sorted(ByteLevel.alphabet()) + ["".join(m.split()) for m in MERGES] + [EOS]
CONTROL_TOKEN, NORMAL_TOKEN = 3, 1  # llama.cpp's token types

Q8_0, Q4_0, Q4_1, F32 = (GGMLQuantizationType[t] for t in ("Q8_0", "Q4_0", "Q4_1", "F32"))



def layout() -> dict:
    """GGUF tensor name -> (transformers parameter name, shape, storage type)."""
    tensors = {
        "token_embd.weight": ("model.embed_tokens.weight", (len(TOKENS), HIDDEN), Q8_0),
        "output_norm.weight": ("model.norm.weight", (HIDDEN,), F32),
    }
    kv = KV_HEADS * HEAD_DIM
    for i in range(BLOCKS):
        block, layer = f"blk.{i}", f"model.layers.{i}"
        tensors |= {
            f"{block}.attn_norm.weight": (f"{layer}.input_layernorm.weight", (HIDDEN,), F32),
            f"{block}.ffn_norm.weight": (f"{layer}.post_attention_layernorm.weight", (HIDDEN,), F32),
            f"{block}.attn_q.weight": (f"{layer}.self_attn.q_proj.weight", (HIDDEN, HIDDEN), Q8_0),
            f"{block}.attn_k.weight": (f"{layer}.self_attn.k_proj.weight", (kv, HIDDEN), Q4_0),
            f"{block}.attn_v.weight": (f"{layer}.self_attn.v_proj.weight", (kv, HIDDEN), Q4_1),
            f"{block}.attn_output.weight": (f"{layer}.self_attn.o_proj.weight", (HIDDEN, HIDDEN), Q8_0),
            f"{block}.ffn_gate.weight": (f"{layer}.mlp.gate_proj.weight", (FFN, HIDDEN), Q4_1),
            f"{block}.ffn_up.weight": (f"{layer}.mlp.up_proj.weight", (FFN, HIDDEN), Q4_0),
            f"{block}.ffn_down.weight": (f"{layer}.mlp.down_proj.weight", (HIDDEN, FFN), Q8_0),
        }
    return tensors


def rotary_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's row order for q and k: within each head, the two rotary halves interleaved
    (row i of the first half, then row i of the second) rather than one after the other."""
    rows_per_half = weight.shape[0] // heads // 2
    return weight.reshape(heads, 2, rows_per_half, -1).swapaxes(1, 2).reshape(weight.shape)


def write_tiny_llama(path, architecture="llama", tokenizer_model="gpt2", extra_tensors=()):
    """Writes the tiny model to path; returns the weights a reader of the file should end up
    with (dequantized, in transformers' names and row order)."""
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny llama")
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(BLOCKS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_tokenizer_model(tokenizer_model)
    writer.add_token_list(TOKENS)
    writer.add_token_types([NORMAL_TOKEN] * (len(TOKENS) - 1) + [CONTROL_TOKEN])
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(TOKENS.index(EOS))
    writer.add_eos_token_id(TOKENS.index(EOS))
    writer.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")

    expected = {}
    for gguf_name, (hf_name, shape, qtype) in layout().items():
        if qtype == F32:
            weight = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
            writer.add_tensor(gguf_name, weight)
            expected[hf_name] = torch.from_numpy(weight)
            continue
        weight = (0.2 * rng.standard_normal(shape)).astype(np.float32)
        # Quantizing is row by row, so permuting rows before or after it gives the same blocks.
        dequantized = gguf.quants.dequantize(gguf.quants.quantize(weight, qtype), qtype)
        expected[hf_name] = torch.from_numpy(dequantized)
        if ".attn_q." in gguf_name:
            weight = rotary_permute(weight, HEADS)
        if ".attn_k." in gguf_name:
            weight = rotary_permute(weight, KV_HEADS)
        writer.add_tensor(gguf_name, gguf.quants.quantize(weight, qtype), raw_dtype=qtype)
    for name, data, qtype in extra_tensors:
        writer.add_tensor(name, data, raw_dtype=qtype)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


def reference_model(weights: dict) -> torch.nn.Module:
    """The tiny model built by transformers from its config alone, holding the given weights."""
    config = transformers.LlamaConfig(
        vocab_size=len(TOKENS),
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=BLOCKS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        max_position_embeddings=128,
        rms_norm_eps=float(np.float32(RMS_EPS)),  # GGUF stores it as a float32
        tie_word_embeddings=True,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert missing == ["lm_head.weight"] and not unexpected  # lm_head is the tied embedding
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(path, expected weights) of the tiny llama file."""
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return path, write_tiny_llama(path)


@pytest.fixture(scope="module")
def tiny_loaded(tiny):
    path, _ = tiny
    return load_causal_lm(path)


TEXT = "hello world"


def logits(model, tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(TEXT, return_tensors="pt")).logits


def test_describe_reads_the_header(tiny):
    path, _ = tiny
    info = describe(path)
    assert info.path == path
    assert info.architecture == "llama"
    assert info.name == "tiny llama"
    assert info.block_count == BLOCKS
    assert info.tensor_types == {"F32": 5, "Q4_0": 4, "Q4_1": 4, "Q8_0": 7}
    assert info.has_chat_template


def test_loaded_model_matches_transformers_built_from_the_same_weights(tiny, tiny_loaded):
    _, expected = tiny
    model, tokenizer = tiny_loaded
    assert isinstance(model, transformers.LlamaForCausalLM) and not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    for name, weight in expected.items():  # q and k come back in transformers' row order
        assert torch.equal(model.state_dict()[name], weight), name
    assert torch.equal(logits(model, tokenizer), logits(reference_model(expected), tokenizer))


def test_tokenizer_comes_from_the_file_and_pads_with_eos(tiny_loaded):
    _, tokenizer = tiny_loaded
    ids = tokenizer(TEXT)["input_ids"]
    assert TOKENS[ids[0]] == "hell"  # the merges are applied
    assert tokenizer.decode(ids) == TEXT
    assert tokenizer.eos_token == EOS
    assert tokenizer.pad_token == EOS


def test_no_quantization_marks_and_save_pretrained_round_trip(tiny_loaded, tmp_path):
    model, tokenizer = tiny_loaded
    assert getattr(model.config, "quantization_config", None) is None
    assert getattr(model, "hf_quantizer", None) is None
    assert not getattr(model, "is_quantized", False)

    model.save_pretrained(tmp_path)
    assert "quantization_config" not in (tmp_path / "config.json").read_text()
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert getattr(reloaded.config, "quantization_config", None) is None
    assert reloaded.dtype == torch.float32
    assert torch.equal(logits(reloaded, tokenizer), logits(model, tokenizer))


def test_is_gguf():
    assert is_gguf("models/tiny.gguf")
    assert is_gguf("TINY.GGUF")
    assert not is_gguf("sentence-transformers/all-MiniLM-L6-v2")
    assert not is_gguf("model.gguf.part")


def truncated(tiny, directory, keep):
    path, _ = tiny
    data = path.read_bytes()
    cut = directory / "cut.gguf"
    cut.write_bytes(data[: keep(len(data))])
    return cut


def write_text_file(directory):
    path = directory / "notes.gguf"
    path.write_text("hello\n")
    return path


def write_bert(directory):
    path = directory / "bert.gguf"
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", np.zeros((8, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_without_tokenizer(directory):
    path = directory / "no-tokenizer.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def with_extra_tensor(directory, name, data, qtype):
    path = directory / "extra.gguf"
    write_tiny_llama(path, extra_tensors=[(name, data, qtype)])
    return path


IQ4_NL_BLOCK_BYTES = 18  # 32 four-bit codes and a float16 scale
BAD_FILES = {
    "missing": (lambda tiny, d: d / "absent.gguf", "no such file"),
    "directory": (lambda tiny, d: d, "not a regular file"),
    "not gguf": (lambda tiny, d: write_text_file(d), "not a GGUF file"),
    "cut in half": (lambda tiny, d: truncated(tiny, d, lambda n: n // 2), "truncated"),
    "cut by 3 bytes": (lambda tiny, d: truncated(tiny, d, lambda n: n - 3), "truncated"),
    "header only": (lambda tiny, d: truncated(tiny, d, lambda n: 20), "truncated"),
    "bert": (lambda tiny, d: write_bert(d), "architecture 'bert'"),
    "no tokenizer": (lambda tiny, d: write_without_tokenizer(d), "no tokenizer"),
    "F64 tensor": (
        lambda tiny, d: with_extra_tensor(d, "extra.weight", np.zeros(4, np.float64), None),
        "tensor 'extra.weight' has type F64",
    ),
    "IQ4_NL tensor": (
        lambda tiny, d: with_extra_tensor(
            d, "extra.weight", np.zeros((2, IQ4_NL_BLOCK_BYTES), np.uint8), GGMLQuantizationType.IQ4_NL
        ),
        "tensor 'extra.weight' has type IQ4_NL",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_raise_one_line_naming_the_file(case, tiny, tmp_path):
    make, problem = BAD_FILES[case]
    path = make(tiny, tmp_path)
    with pytest.raises(GGUFError) as raised:
        describe(path)
    message = str(raised.value)
    assert str(path) in message and problem in message
    assert "\n" not in message
    with pytest.raises(GGUFError, match=problem):  # load_causal_lm checks first, loads nothing
        load_causal_lm(path)


def test_refusals_list_what_is_accepted(tiny, tmp_path):
    with pytest.raises(GGUFError, match="accepted: llama, mistral, qwen2"):
        describe(write_bert(tmp_path))
    with pytest.raises(GGUFError, match="accepted: F32, F16, BF16, Q4_0"):
        describe(with_extra_tensor(tmp_path, "extra.weight", np.zeros(4, np.float64), None))


def test_transformers_failures_become_one_line_gguf_errors(tmp_path):
    path = tmp_path / "unknown-tokenizer.gguf"
    write_tiny_llama(path, tokenizer_model="no-such-tokenizer")
    with pytest.raises(GGUFError, match="transformers could not load it .*no-such-tokenizer") as raised:
        load_causal_lm(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


SMOLLM2 = assets.cache_dir() / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.skipif(not SMOLLM2.exists(), reason="SmolLM2-135M-Instruct GGUF not in the intcore cache")
def test_describe_smollm2():
    info = describe(SMOLLM2)
    assert info.architecture == "llama"
    assert info.block_count == 30
    assert {"Q4_1", "Q8_0"} <= set(info.tensor_types)
    assert info.has_chat_template
