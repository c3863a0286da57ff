"""`intcore evaluate` for exported causal LMs: the sentiment task's accuracy by answer
likelihood, and perplexity on a text file, each computed as `intcore finetune-lm` computes it."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from intcore.drivers import causal_lm_data, finetune_lm, recipe_setup
from intcore.drivers.errors import DriverError


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


@torch.no_grad()
def sentiment(model, tokenizer, record, examples: list[tuple[str, int]], batch_size, device) -> dict:
    """Accuracy (the likelier answer) and loss (nats of the right answer per example)."""
    answers = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in causal_lm_data.SENTIMENT_ANSWERS]
    prompts = [(tokenizer(causal_lm_data.SENTIMENT_PROMPT.format(text=t), add_special_tokens=False)["input_ids"], label)
               for t, label in examples]
    correct, nats = 0, 0.0
    for batch, labels in causal_lm_data.choice_batches(prompts, answers, batch_size or record.batch_size,
                                                       record.max_length, _pad_id(tokenizer)):
        with recipe_setup.forward_context(record.recipe, device):
            nll = finetune_lm.answer_losses(model, batch.to(device), answers).cpu()
        correct += int((nll.argmin(1) == labels).sum())
        nats += float(nll.gather(1, labels[:, None]).sum())
    return {"accuracy": correct / len(prompts), "loss": nats / len(prompts)}


@torch.no_grad()
def perplexity(model, tokenizer, record, path: str, batch_size, device) -> dict:
    """Loss per token and perplexity over consecutive windows of record.max_length + 1 tokens."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    data = causal_lm_data.LMData("text", path, torch.empty(0, dtype=torch.long),
                                 torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long))
    if len(data.validation) < 2:
        raise DriverError(f"--data {path} holds fewer than two tokens")
    batches = causal_lm_data.validation_batches(data, batch_size or record.batch_size, record.max_length,
                                                _pad_id(tokenizer), max_batches=10**9)
    nats = tokens = 0.0
    for batch in batches:
        with recipe_setup.forward_context(record.recipe, device):
            nats += float(finetune_lm.token_losses(model, batch.to(device)).sum())
        tokens += batch.target_tokens
    loss = nats / tokens
    return {"tokens": int(tokens), "loss": loss, "perplexity": math.exp(min(loss, 700))}
