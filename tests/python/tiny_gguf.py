"""A tiny llama GGUF written the way llama.cpp's converter lays one out (2 blocks, hidden size 64,
a byte-level BPE vocabulary of 263 tokens): q and k rows permuted for its rotary embedding, norms
in F32, linear weights in Q8_0, Q4_0 and Q4_1. Shared by the GGUF tests."""

import gguf
import numpy as np
import torch
import transformers
from gguf import GGMLQuantizationType
from tokenizers.pre_tokenizers import ByteLevel

HIDDEN, FFN, HEADS, KV_HEADS, BLOCKS = 64, 128, 4, 2, 2
HEAD_DIM = HIDDEN // HEADS
RMS_EPS = 1e-5
MERGES = ["h e", "l l", "he ll", "o r", "Ġ w", "Ġw or"]
EOS = "<|endoftext|>"
TOKENS = sorted(ByteLevel.alphabet()) + ["".join(m.split()) for m in MERGES] + [EOS]
CONTROL_TOKEN, NORMAL_TOKEN = 3, 1  # llama.cpp's token types

Q8_0, Q4_0, Q4_1, F32 = (GGMLQuantizationType[t] for t in ("Q8_0", "Q4_0", "Q4_1", "F32"))



def layout(all_q4: bool = False) -> dict:
    """GGUF tensor name -> (transformers parameter name, shape, storage type). all_q4: every
    linear weight in Q4_0 or Q4_1 (a base for adapters over the file's own blocks)."""
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
            f"{block}.attn_q.weight": (f"{layer}.self_attn.q_proj.weight", (HIDDEN, HIDDEN), Q4_1 if all_q4 else Q8_0),
            f"{block}.attn_k.weight": (f"{layer}.self_attn.k_proj.weight", (kv, HIDDEN), Q4_0),
            f"{block}.attn_v.weight": (f"{layer}.self_attn.v_proj.weight", (kv, HIDDEN), Q4_1),
            f"{block}.attn_output.weight": (f"{layer}.self_attn.o_proj.weight", (HIDDEN, HIDDEN),
                                            Q4_0 if all_q4 else Q8_0),
            f"{block}.ffn_gate.weight": (f"{layer}.mlp.gate_proj.weight", (FFN, HIDDEN), Q4_1),
            f"{block}.ffn_up.weight": (f"{layer}.mlp.up_proj.weight", (FFN, HIDDEN), Q4_0),
            f"{block}.ffn_down.weight": (f"{layer}.mlp.down_proj.weight", (HIDDEN, FFN), Q4_1 if all_q4 else Q8_0),
        }
    return tensors


def rotary_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's row order for q and k: within each head, the two rotary halves interleaved
    (row i of the first half, then row i of the second) rather than one after the other."""
    rows_per_half = weight.shape[0] // heads // 2
    return weight.reshape(heads, 2, rows_per_half, -1).swapaxes(1, 2).reshape(weight.shape)


def write_tiny_llama(path, architecture="llama", tokenizer_model="gpt2", extra_tensors=(), all_q4=False):
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
    for gguf_name, (hf_name, shape, qtype) in layout(all_q4).items():
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
