"""A GGUF LoRA adapter written by intcore, applied by a real llama.cpp (llama-cpp-python) over the
base file, against intcore's merged float model. Skips where llama-cpp-python is not installed
(it builds llama.cpp from source: benchmarks/llamacpp_lora.py has the command)."""

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

llama_cpp = pytest.importorskip("llama_cpp")

from intcore.gguf import attach_q4_blocks, load_causal_lm  # noqa: E402
from intcore.gguf.lora_adapter import write_lora_adapter  # noqa: E402
from intcore.peft import qdylora  # noqa: E402
from tiny_gguf import write_tiny_llama  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from llamacpp_lora import GGML_TYPE_F32, write_f32_copy  # noqa: E402


def llamacpp_logits(model_path, ids, adapter=None):
    kwargs = {"lora_path": str(adapter), "lora_scale": 1.0} if adapter else {}
    llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=64, logits_all=True, verbose=False,
                          type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, **kwargs)  # float32 KV cache
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def adapted_tiny_model(tmp_path):
    """The tiny Q4 model, a rank-3 adapter with a large update written for llama.cpp, and
    (ours, base): the merged and the plain model's logits on 40 token ids."""
    path = tmp_path / "tiny-q4.gguf"
    write_tiny_llama(path, all_q4=True)
    model, _ = load_causal_lm(path)
    attach_q4_blocks(model, path)
    config = qdylora.QDyLoraConfig(r_max=4, alpha=8, target_modules=qdylora.LLAMA_LINEARS, base="gguf", mode="all",
                                   modules_to_save=(), skip_modules=("lm_head",), dropout=0.0)
    wrapped = qdylora.wrap_qdylora(copy.deepcopy(model), config)
    torch.manual_seed(0)
    with torch.no_grad():  # a large update, so that an adapter applied wrongly cannot pass
        for layer in wrapped.modules():
            if hasattr(layer, "lora_B"):
                layer.lora_B.normal_(std=0.5)
    qdylora.set_rank(wrapped, 3)
    adapter = write_lora_adapter(wrapped, tmp_path / "adapter.gguf", "llama", rank=3)
    merged = qdylora.merge_and_unload(copy.deepcopy(wrapped), rank=3).eval()
    ids = torch.randint(0, 263, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    with torch.no_grad():
        ours = merged(input_ids=torch.tensor([ids])).logits[0].numpy()
        base = model.eval()(input_ids=torch.tensor([ids])).logits[0].numpy()
    return path, adapter, ids, ours, base


def test_llamacpp_applies_our_adapter_as_our_merged_model_computes(tmp_path):
    path, adapter, ids, ours, base = adapted_tiny_model(tmp_path)
    theirs = llamacpp_logits(path, ids, adapter)
    plain = llamacpp_logits(path, ids)
    # the adapter moved the logits far more than llama.cpp's 8-bit activations do (top-1 agreement
    # is no measure here: a tiny random model's logits are full of near ties)
    assert np.abs(theirs - ours).max() < 0.2 * np.abs(ours - base).max()
    assert np.abs(plain - base).max() < 0.2 * np.abs(ours - base).max()


def test_llamacpp_on_float32_weights_matches_our_merged_model(tmp_path):
    """Without llama.cpp's 4-bit kernels (the same weights written as float32) its logits with our
    adapter are ours up to float summation order."""
    path, adapter, ids, ours, base = adapted_tiny_model(tmp_path)
    f32 = tmp_path / "tiny-f32.gguf"
    write_f32_copy(path, f32)
    theirs = llamacpp_logits(f32, ids, adapter)
    assert (theirs.argmax(1) == ours.argmax(1)).all()
    assert np.abs(theirs - ours).max() < 1e-3 * np.abs(ours - base).max()
    assert np.abs(llamacpp_logits(f32, ids) - base).max() < 1e-3 * np.abs(ours - base).max()
