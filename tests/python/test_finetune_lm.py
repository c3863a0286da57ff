"""`intcore finetune-lm`, `intcore generate` and `intcore evaluate` on a tiny random Llama with a
byte-level tokenizer and chat template: outputs, perplexity falling, the sentiment task, JSONL
pairs with the loss on responses only, resume, bad input, DDP and FSDP2."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from intcore import assets  # noqa: E402
from intcore.drivers import causal_lm_data, evaluate, finetune_lm, generate  # noqa: E402

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
TEXT = ("the quick brown fox jumps over the lazy dog. " * 3 + "a stitch in time saves nine. " * 2 +
        "to be or not to be, that is the question. ") * 40


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer random Llama with a 300-token byte-level BPE tokenizer and a chat template."""
    path = tmp_path_factory.mktemp("tiny-llama")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator([TEXT, "Review: Sentiment: positive negative"], vocab_size=300,
                            special_tokens=["<|end|>", "<|pad|>"], show_progress=False)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|end|>",
                                                     pad_token="<|pad|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=256, tie_word_embeddings=True,
                                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory, tiny_llama) -> Path:
    """A 2-layer random Gemma 3 (RMSNorm scaling by 1 + weight) with the tiny Llama's tokenizer."""
    path = tmp_path_factory.mktemp("tiny-gemma")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = transformers.Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96,
                                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                           head_dim=12, max_position_embeddings=256, sliding_window=16,
                                           eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    transformers.Gemma3ForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "proverbs.txt"
    path.write_text(TEXT)
    return path


def lm_args(model, data, output, *extra):
    return ["--model", str(model), "--data", str(data), "--steps", "30", "--batch-size", "8", "--context", "32",
            "--lr", "3e-3", "--eval-every", "10", "--eval-batches", "2", "--output", str(output), "--no-progress",
            *extra]


def test_text_runs_write_outputs_and_perplexity_falls(tiny_llama, corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert finetune_lm.cli(lm_args(tiny_llama, corpus, out, "--recipes", "fp32,int8")) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["recipes"]) == {"fp32", "int8"}
    for name, r in results["recipes"].items():
        assert r["complete"]
        assert r["val_perplexity"] < 0.5 * r["base_val_perplexity"], name
        assert r["history"][0]["step"] == 0 and "val_loss" in r["history"][0]
        record = json.loads((out / "models" / name / "intcore.json").read_text())
        assert record["task"] == "causal-lm" and record["recipe"] == name
    assert (out / "curves.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "val ppl" in printed and "int8" in printed

    # The exported models, run in their recipes' arithmetic, give the run's perplexity back.
    assert evaluate.cli([str(out), "--data", str(corpus)]) == 0
    assert "perplexity" in capsys.readouterr().out
    assert generate.cli([str(out), "--prompt", "the quick", "--max-new-tokens", "8", "--raw"]) == 0
    first = capsys.readouterr().out
    assert "[int8 (int8)] the quick" in first
    assert generate.cli([str(out), "--prompt", "the quick", "--max-new-tokens", "8", "--raw"]) == 0
    assert capsys.readouterr().out == first  # nearest rounding in eval: generation repeats itself


def test_gemma_fine_tunes_in_int16(tiny_gemma, corpus, tmp_path):
    out = tmp_path / "gemma"
    assert finetune_lm.cli(lm_args(tiny_gemma, corpus, out, "--recipe", "int16", "--steps", "20")) == 0
    r = json.loads((out / "results.json").read_text())["recipes"]["int16"]
    assert r["val_perplexity"] < 0.5 * r["base_val_perplexity"]


def test_resume_reproduces_the_uninterrupted_run(tiny_llama, corpus, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert finetune_lm.cli(lm_args(tiny_llama, corpus, whole, "--steps", "12", "--recipe", "int8")) == 0
    assert finetune_lm.cli(lm_args(tiny_llama, corpus, parts, "--steps", "12", "--recipe", "int8",
                                   "--checkpoint-every", "5", "--keep-checkpoints", "3")) == 0
    # Resume from step 5 of a finished run's kept checkpoints: the same steps follow.
    results = json.loads((parts / "results.json").read_text())
    del results["recipes"]["int8"]
    (parts / "results.json").write_text(json.dumps(results))
    for step in ("step-00000012", "step-00000010"):
        shutil.rmtree(parts / "checkpoints" / "int8" / step)
    (parts / "checkpoints" / "int8" / "latest").write_text("step-00000005")
    assert finetune_lm.cli(lm_args(tiny_llama, corpus, parts, "--steps", "12", "--recipe", "int8",
                                   "--checkpoint-every", "5", "--resume")) == 0
    a = json.loads((whole / "results.json").read_text())["recipes"]["int8"]["history"]
    b = json.loads((parts / "results.json").read_text())["recipes"]["int8"]["history"]
    assert a == b


def test_pairs_train_on_responses_only(tiny_llama, tmp_path, capsys):
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_llama)
    prompt, response = causal_lm_data.render_pair(tokenizer, "the quick brown", "fox jumps", chat=True)
    assert tokenizer.decode(prompt) == "<|user|>the quick brown<|end|><|assistant|>"
    assert tokenizer.decode(response) == "fox jumps<|end|>"
    batch = causal_lm_data.collate([(prompt, response), ([5, 6], [7])], tokenizer.pad_token_id, 64)
    assert batch.labels[0].tolist() == [-100] * len(prompt) + response
    assert batch.labels[1].tolist()[:3] == [-100, -100, 7] and batch.attention_mask[1].sum() == 3
    assert batch.input_ids[0, :len(prompt)].tolist() == prompt  # a prompt that fits is kept whole
    cut = causal_lm_data.collate([([1, 2, 3, 4, 5], [6, 7])], 0, 4)  # one that does not loses its start
    assert cut.input_ids.tolist() == [[4, 5, 6, 7]] and cut.labels.tolist() == [[-100, -100, 6, 7]]

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"question": f"say {w}", "answer": w}) + "\n"
                            for w in ["fox", "dog", "time", "nine"] * 10))
    out = tmp_path / "pairs"
    assert finetune_lm.cli(lm_args(tiny_llama, data, out, "--prompt-field", "question", "--response-field", "answer",
                                   "--recipe", "int16", "--steps", "20")) == 0
    r = json.loads((out / "results.json").read_text())["recipes"]["int16"]
    assert r["val_loss"] < r["history"][0]["val_loss"]


def test_sentiment_task_scores_answers_by_likelihood(tiny_llama, tmp_path, capsys, monkeypatch):
    # Rotten Tomatoes stood in for by reviews whose words give the label away.
    reviews = [(f"the fox was {'quick' if i % 2 else 'lazy'}", i % 2) for i in range(200)]
    monkeypatch.setattr(assets, "rotten_tomatoes", lambda: reviews)
    out = tmp_path / "sentiment"
    assert finetune_lm.cli(lm_args(tiny_llama, "rotten_tomatoes", out, "--recipe", "int8", "--steps", "80",
                                   "--lr", "5e-3")) == 0
    results = json.loads((out / "results.json").read_text())
    r = results["recipes"]["int8"]
    assert 0 <= results["zero_shot"]["test_accuracy"] <= 1
    assert r["test_accuracy"] > 0.95 and "val_accuracy" in r["history"][-1]
    assert "zero-shot (fp32)" in capsys.readouterr().out
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("text,label\n" + "".join(f"{t},{['negative', 'positive'][y]}\n" for t, y in reviews[:40]))
    assert evaluate.cli([str(out), "--data", str(labelled)]) == 0
    assert "1.0000" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gemma"])
def test_one_token_answers_scored_from_one_forward_equal_the_pair_losses(name, request):
    """Left-padded prompts, the last column's logits only: the same nats as scoring every answer
    appended to its prompt (right-padded), for prompts of many lengths, some cut to the context,
    and past Gemma's sliding window."""
    model = transformers.AutoModelForCausalLM.from_pretrained(request.getfixturevalue(name)).eval()
    g = torch.Generator().manual_seed(0)
    examples = [(torch.randint(3, 290, (n,), generator=g).tolist(), n % 2) for n in (3, 9, 17, 30, 41, 60)]
    answers = [[7], [11]]
    pairs_batches = [causal_lm_data.collate([(p, a) for p, _ in examples for a in answers], 1, 40)]
    batches = causal_lm_data.choice_batches(examples, answers, 4, 40, 1)
    assert [b.input_ids.shape for b, _ in batches] == [(4, 30), (2, 39)]
    with torch.no_grad():
        ours = torch.cat([finetune_lm.answer_losses(model, b, answers) for b, _ in batches])
        pairs = finetune_lm.token_losses(model, pairs_batches[0]).view(-1, 2)
    torch.testing.assert_close(ours, pairs, rtol=1e-4, atol=1e-4)
    assert torch.equal(torch.cat([labels for _, labels in batches]), torch.tensor([n % 2 for n in (3, 9, 17, 30, 41, 60)]))
    # longer answers keep the pair layout
    two = [[7, 8], [11]]
    batch, _ = causal_lm_data.choice_batches(examples[:2], two, 4, 40, 1)[0]
    assert batch.input_ids.shape[0] == 4 and finetune_lm.answer_losses(model, batch, two).shape == (2, 2)


def run_cli_error(cli, args, capsys) -> str:
    assert cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_gives_one_line_errors(tiny_llama, corpus, tmp_path, capsys):
    out = str(tmp_path / "o")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "reply": "b"}\n' * 4)
    assert "line 1 has fields ['prompt', 'reply'] but not ['response']" in run_cli_error(
        finetune_lm.cli, lm_args(tiny_llama, bad, out), capsys)
    assert "--model nowhere: no such file or directory" in run_cli_error(
        finetune_lm.cli, lm_args("nowhere", corpus, out), capsys)
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a gguf file at all")
    assert str(fake) in run_cli_error(finetune_lm.cli, lm_args(fake, corpus, out), capsys)
    assert "--rank-mode applies to --method qdylora, not lora" in run_cli_error(
        finetune_lm.cli, lm_args(tiny_llama, corpus, out, "--method", "lora", "--rank-mode", "all"), capsys)
    assert "--fsdp shards across processes" in run_cli_error(finetune_lm.cli, lm_args(tiny_llama, corpus, out, "--fsdp"),
                                                             capsys)


def torchrun(module: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", module, *args],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_two_process_runs_and_resume(tiny_llama, corpus, tmp_path, sharding):
    out = tmp_path / sharding
    args = lm_args(tiny_llama, corpus, out, "--recipe", "int8", "--steps", "10", "--checkpoint-every", "5",
                   "--keep-checkpoints", "2", *(["--fsdp"] if sharding == "fsdp" else []))
    done = torchrun("intcore.finetune_lm", args)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    r = results["recipes"]["int8"]
    assert r["complete"] and r["val_perplexity"] < r["base_val_perplexity"]
    model = transformers.AutoModelForCausalLM.from_pretrained(out / "models" / "int8")
    assert sum(p.numel() for p in model.parameters()) > 0
    # Resumed at step 5 (the checkpoint gathered from both ranks' shards under FSDP2), the run
    # takes the same steps again.
    del results["recipes"]["int8"]
    (out / "results.json").write_text(json.dumps(results))
    shutil.rmtree(out / "checkpoints" / "int8" / "step-00000010")
    (out / "checkpoints" / "int8" / "latest").write_text("step-00000005")
    done = torchrun("intcore.finetune_lm", args + ["--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "results.json").read_text())["recipes"]["int8"]["history"] == r["history"]


@pytest.fixture(scope="module")
def tiny_q4_gguf(tmp_path_factory) -> Path:
    from tiny_gguf import write_tiny_llama

    path = tmp_path_factory.mktemp("gguf-lm") / "tiny-q4.gguf"
    write_tiny_llama(path, all_q4=True)
    return path


@pytest.mark.parametrize("method,base,mode", [("qdylora", "gguf-int", None), ("lora", None, None),
                                              ("qdylora", "gguf", "all")])
def test_adapters_on_the_gguf_blocks(tiny_q4_gguf, tmp_path, capsys, monkeypatch, method, base, mode):
    from intcore.gguf.lora_adapter import read_lora_adapter

    reviews = [(f"hello {'world' if i % 2 else 'hell'}", i % 2) for i in range(120)]
    monkeypatch.setattr(assets, "rotten_tomatoes", lambda: reviews)
    out = tmp_path / method
    extra = (["--method", method, "--rank-max", "3", "--rank", "2"] + (["--base", base] if base else [])
             + (["--rank-mode", mode] if mode else []))
    assert finetune_lm.cli(lm_args(tiny_q4_gguf, "rotten_tomatoes", out, "--recipe", "int8", "--steps", "6",
                                   "--lr", "1e-2", *extra)) == 0
    results = json.loads((out / "results.json").read_text())
    # A GGUF model of Q4 weights defaults to its own blocks; mode all is in the run's name.
    run = f"{method}{'-all' if mode == 'all' else ''}-{base or 'gguf'}-int8"
    a = results["recipes"][run]["adapters"]
    assert a["config"]["mode"] == (mode or ("frozen" if method == "qdylora" else "fixed"))
    assert [r["rank"] for r in a["ranks"]] == ([1, 2, 3] if method == "qdylora" else [2])
    assert a["base_storage"]["ratio"] < 0.2 and 0 < a["trainable_parameters"] < a["total_parameters"]
    meta, tensors = read_lora_adapter(a["gguf"])
    assert meta["type"] == "adapter" and meta["architecture"] == "llama" and meta["alpha"] == 16.0
    assert tensors["blk.0.attn_q.weight.lora_a"].shape[0] == a["best_rank"]
    assert Path(a["file"]).is_file()
    merged = transformers.AutoModelForCausalLM.from_pretrained(out / "models" / run)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    printed = capsys.readouterr().out
    assert "parameters train; base weights" in printed and "for llama.cpp" in printed
    if method == "qdylora":
        assert "every rank of one run" in printed and Path(a["plot"]).is_file()
        assert f"[{run}] rank 3 of 3: val loss" in printed
