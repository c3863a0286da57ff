"""What a GGUF file holds, read from its header and checked before any weights are loaded.

transformers reads a GGUF by dequantizing every tensor into a model it builds from the metadata;
a file it cannot use fails there late, after seconds of work, with a message about numpy shapes
or a missing key. describe() reads only the header and the tensor table (gguf-py maps the file,
it reads no tensor data) and turns every way a file can be unusable into one GGUFError line that
names the file and the problem.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

GGUF_MAGIC = b"GGUF"

# Decoder-only causal LMs; transformers also reads encoder-decoders (t5), state-space models
# (mamba) and MoE models from GGUF, which the intcore tools that take a causal LM cannot use.
DECODER_ARCHITECTURES = (
    "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "stablelm", "starcoder2",
    "nemotron", "falcon", "gpt2", "bloom",
)

# llama.cpp's float, classic block and K-quant types, which gguf-py dequantizes and which cover the
# usual published files. The importance-matrix (IQ*), ternary (TQ*) and microscaling (MXFP4, NVFP4)
# codes stay out until a file using them has been tested; F64 and the integer types hold no weights.
ACCEPTED_TENSOR_TYPES = (
    "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
    "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
)


class GGUFError(ValueError):
    """A GGUF file that cannot be used as model input; the message is one line naming the file."""

    @classmethod
    def caused_by(cls, path: str | Path, problem: str, cause: BaseException) -> GGUFError:
        """This error for a problem another library raised: its message, line breaks collapsed,
        follows in brackets (gguf-py's and transformers' messages can run to several lines)."""
        detail = " ".join(str(cause).split()) or type(cause).__name__
        return cls(f"{path}: {problem} ({detail})")


@dataclass(frozen=True)
class GGUFInfo:
    """What describe() found in a usable GGUF file."""

    path: Path
    architecture: str  # general.architecture, e.g. "llama"
    name: str  # general.name, or the file's stem where the file has none
    block_count: int  # transformer blocks, from <architecture>.block_count
    tensor_types: dict[str, int]  # tensor type name (e.g. "Q4_1") -> how many tensors have it
    has_chat_template: bool  # whether tokenizer.chat_template is in the metadata


def supported_architectures() -> tuple[str, ...]:
    """The decoder architectures this transformers release reads from GGUF."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return tuple(a for a in DECODER_ARCHITECTURES if a in GGUF_SUPPORTED_ARCHITECTURES)


def describe(path: str | Path) -> GGUFInfo:
    """The architecture, size and tensor types of the GGUF file at path; raises GGUFError when the
    file is missing, is not GGUF, is truncated or corrupt, holds an architecture or a tensor type
    that load_causal_lm() does not accept, or has no tokenizer (which load_causal_lm() returns with
    the model, and without which transformers guesses the vocabulary size)."""
    return checked_reader(path)[0]


def checked_reader(path: str | Path) -> tuple[GGUFInfo, "gguf.GGUFReader"]:
    """describe(path) and the gguf-py reader it checked. Parsing a header takes seconds (gguf-py
    reads the tokenizer's arrays element by element), and loading a model for LoRA reads it more
    than once, so the last few files are kept, each until it changes on disk."""
    path = Path(path)
    _check_magic(path)
    stat = path.stat()
    return _read_checked(path, path.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _read_checked(path: Path, resolved: Path, mtime_ns: int, size: int) -> tuple[GGUFInfo, "gguf.GGUFReader"]:
    """The work of checked_reader; path as the caller wrote it (messages name it), the rest the
    cache key: which file, and its state on disk."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    # gguf-py signals a malformed file with whatever its numpy indexing happens to raise
    except Exception as error:
        raise GGUFError.caused_by(path, "truncated or corrupt GGUF file", error) from error
    _check_tensor_extents(path, reader)

    architecture = _metadata(path, reader, "general.architecture")
    accepted = supported_architectures()
    if architecture not in accepted:
        raise GGUFError(
            f"{path}: architecture {architecture!r} is not a decoder causal LM transformers reads "
            f"from GGUF (accepted: {', '.join(accepted)})"
        )
    for tensor in reader.tensors:
        if tensor.tensor_type.name not in ACCEPTED_TENSOR_TYPES:
            raise GGUFError(
                f"{path}: tensor {tensor.name!r} has type {tensor.tensor_type.name}, which is not "
                f"accepted (accepted: {', '.join(ACCEPTED_TENSOR_TYPES)})"
            )

    if reader.get_field("tokenizer.ggml.tokens") is None:
        raise GGUFError(f"{path}: no tokenizer in its metadata (tokenizer.ggml.tokens is missing)")

    block_count = _metadata(path, reader, f"{architecture}.block_count")
    name_field = reader.get_field("general.name")
    tensor_types = Counter(tensor.tensor_type.name for tensor in reader.tensors)
    info = GGUFInfo(
        path=path,
        architecture=architecture,
        name=name_field.contents() if name_field is not None else path.stem,
        block_count=int(block_count),
        tensor_types=dict(sorted(tensor_types.items())),
        has_chat_template=reader.get_field("tokenizer.chat_template") is not None,
    )
    return info, reader


def _check_magic(path: Path) -> None:
    """Existence and the four magic bytes, checked before gguf-py maps the file: its errors for
    a missing, empty or foreign file say nothing about which file or why."""
    if not path.exists():
        raise GGUFError(f"{path}: no such file")
    if not path.is_file():
        raise GGUFError(f"{path}: not a regular file")
    try:
        with path.open("rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except OSError as error:
        raise GGUFError.caused_by(path, "cannot be read", error) from error
    if magic != GGUF_MAGIC:
        raise GGUFError(f"{path}: not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})")


def _check_tensor_extents(path: Path, reader) -> None:
    """Every tensor's data lies inside the file. Checked here rather than trusted to the reader:
    gguf-py fails on a short tensor only by way of a numpy reshape error, and a reader that maps
    tensors lazily (transformers' own does) does not fail at all."""
    size = path.stat().st_size
    for tensor in reader.tensors:
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > size:
            raise GGUFError(
                f"{path}: truncated GGUF file (tensor {tensor.name!r} ends at byte {end}, "
                f"the file has {size})"
            )


def _metadata(path: Path, reader, key: str):
    """The value of a metadata key the file must have."""
    field = reader.get_field(key)
    if field is None:
        raise GGUFError(f"{path}: metadata key {key!r} is missing")
    return field.contents()

