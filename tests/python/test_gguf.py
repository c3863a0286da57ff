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

from intcore import assets  # noqa: E402
from intcore.gguf import GGUFError, describe, is_gguf, load_causal_lm  # noqa: E402

from tiny_gguf import BLOCKS, EOS, HIDDEN, TOKENS, reference_model, write_tiny_llama  # noqa: E402


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


def test_describe_reads_a_rewritten_file_afresh(tmp_path):
    """The parsed header is kept for the next reader of the same file, until the file changes."""
    path = tmp_path / "model.gguf"
    write_tiny_llama(path)
    assert describe(path).tensor_types["Q4_1"] == 4 and describe(path) == describe(path)
    write_tiny_llama(path, all_q4=True)
    assert describe(path).tensor_types["Q4_1"] > 4
    write_without_tokenizer(tmp_path).replace(path)
    with pytest.raises(GGUFError, match="no tokenizer"):
        describe(path)


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
