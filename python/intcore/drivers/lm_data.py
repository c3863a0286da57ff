"""Text for `intcore train-lm`: the corpus, its character or byte vocabulary, a held-out
split, and seeded random windows.

--corpus accepts "shakespeare" (the pinned 42 works, intcore.assets) or a plain-text file or a
directory of .txt files. Each document's last 10% is held out for validation, so every work
is seen in both splits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from intcore import assets
from intcore.drivers.errors import DriverError


@dataclass
class Corpus:
    train: torch.Tensor  # int64 token ids
    validation: torch.Tensor
    vocab: list[str]     # characters, or byte values as strings for --tokens byte
    tokens: str

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def unigram_loss(self) -> float:
        """Cross-entropy (nats/token) of validation under the train unigram distribution
        (add-one smoothed): the loss of a model that ignores context."""
        counts = torch.bincount(self.train, minlength=self.vocab_size).double() + 1
        logp = (counts / counts.sum()).log()
        return float(-logp[self.validation].mean())


def documents(corpus: str, option: str = "--corpus") -> dict[str, str]:
    """name -> text of "shakespeare", a text file or a directory of .txt files; errors name `option`."""
    if corpus == "shakespeare":
        return assets.shakespeare()
    path = Path(corpus)
    if path.is_file():
        return {path.name: path.read_text(encoding="utf-8", errors="replace")}
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise DriverError(f"{option} {corpus}: the directory holds no .txt files")
        return {f.name: f.read_text(encoding="utf-8", errors="replace") for f in files}
    raise DriverError(f"{option} {corpus}: no such file or directory; give a text file, a directory of .txt files, "
                      f"or 'shakespeare'")


def load(corpus: str, tokens: str) -> Corpus:
    docs = documents(corpus)
    if tokens == "byte":
        vocab = [str(b) for b in range(256)]
        encode = lambda text: torch.tensor(list(text.encode("utf-8")), dtype=torch.long)  # noqa: E731
    elif tokens == "char":
        vocab = sorted(set("".join(docs.values())))
        index = {ch: i for i, ch in enumerate(vocab)}
        encode = lambda text: torch.tensor([index[ch] for ch in text], dtype=torch.long)  # noqa: E731
    else:
        raise DriverError(f"--tokens must be 'char' or 'byte', got {tokens!r}")
    train, validation = [], []
    for text in docs.values():
        ids = encode(text)
        cut = math.floor(len(ids) * 0.9)
        train.append(ids[:cut])
        validation.append(ids[cut:])
    corpus_data = Corpus(torch.cat(train), torch.cat(validation), vocab, tokens)
    if len(corpus_data.validation) < 2:
        raise DriverError(f"--corpus {corpus} is too small: its held-out tenth has {len(corpus_data.validation)} tokens")
    return corpus_data


def windows(data: torch.Tensor, batch: int, context: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random (input, target) windows; the same seed gives the same windows."""
    context = min(context, len(data) - 1)
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(data) - context, (batch,), generator=g)
    offsets = torch.arange(context)
    x = data[starts[:, None] + offsets]
    y = data[starts[:, None] + offsets + 1]
    return x, y
