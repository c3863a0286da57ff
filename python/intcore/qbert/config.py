"""QBertConfig: the bits of every encoder block and how everything else is quantized. It is
plain JSON on disk, so a user can edit an assignment and pass it back (`intcore qbert --config`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Union

from intcore.qbert.quantizer import ALLOWED_BITS, check_bits


@dataclass(frozen=True)
class QBertConfig:
    """How a model is quantized, Q-BERT style.

    block_bits: weight bits of each encoder block, by block index (blocks are the model's
        transformer layers in order; see intcore.qbert.blocks).
    groups: groups of output rows per weight matrix, each with its own range (Q-BERT's
        group-wise quantization; 1 = per matrix, the number of heads = per head).
    embedding_bits: bits of the word/position/type embedding tables (one range per row).
    other_bits: bits of linear layers outside the blocks (e.g. the pooler).
    percentile: clip ranges to the [p, 100 - p] percentiles (e.g. 0.1) instead of min/max.
    skip: module names kept in float (the classifier).
    Activations entering every quantized linear layer are 8-bit (per token, symmetric).
    """

    block_bits: tuple[int, ...]
    groups: int = 128
    embedding_bits: int = 8
    other_bits: int = 8
    percentile: Optional[float] = None
    skip: tuple[str, ...] = field(default=("classifier",))

    def __post_init__(self):
        object.__setattr__(self, "block_bits", tuple(self.block_bits))
        object.__setattr__(self, "skip", tuple(self.skip))
        if not self.block_bits:
            raise ValueError("QBertConfig.block_bits must name the bits of at least one block")
        for b in self.block_bits:
            check_bits("QBertConfig.block_bits", b)
        check_bits("QBertConfig.embedding_bits", self.embedding_bits)
        check_bits("QBertConfig.other_bits", self.other_bits)
        if isinstance(self.groups, bool) or not isinstance(self.groups, int) or self.groups < 1:
            raise ValueError(f"QBertConfig.groups must be a positive int, got {self.groups!r}")
        if self.percentile is not None and not 0 < self.percentile < 50:
            raise ValueError(f"QBertConfig.percentile must be in (0, 50), got {self.percentile!r}")

    @classmethod
    def uniform(cls, bits: int, blocks: int, **kwargs) -> "QBertConfig":
        return cls(block_bits=(bits,) * blocks, **kwargs)

    def average_bits(self) -> float:
        return sum(self.block_bits) / len(self.block_bits)

    def describe(self) -> str:
        return f"Q-BERT blocks {'/'.join(map(str, self.block_bits))}, {self.groups} groups, emb {self.embedding_bits}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "QBertConfig":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"QBertConfig.load: cannot read {path}: {e}") from None
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"QBertConfig.load: {path} has unknown keys {sorted(unknown)}")
        return cls(**data)


__all__ = ["ALLOWED_BITS", "QBertConfig"]
