"""A GGUF causal LM loaded as a plain float32 transformers model, with its tokenizer.

transformers dequantizes every tensor once, at load, so what comes back is an ordinary model class
(LlamaForCausalLM, Qwen2ForCausalLM, ...) holding float32 weights: intcore's converters and
trainers take it like any other, and save_pretrained writes a float checkpoint that
from_pretrained(directory) reloads without the GGUF file.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from intcore.gguf.header import GGUFError, describe

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def is_gguf(path: str | os.PathLike[str]) -> bool:
    """Whether path names a GGUF file, going by its suffix: how a command line tells a GGUF file
    from a model directory or a hub id without touching the disk."""
    return Path(path).suffix.lower() == ".gguf"


def load_causal_lm(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) from the GGUF file at path: the model in float32 on device, in eval mode,
    carrying no quantization config, so that save_pretrained writes a plain float checkpoint; the
    tokenizer with the end-of-sequence token as its padding token where the file names none.

    describe() checks the file first; what transformers then raises is re-raised as a one-line
    GGUFError naming the file.
    """
    import torch
    import transformers

    # Absolute, because transformers looks for a relative gguf_file in the working directory
    # before the directory it is given, and would load a same-named file from there.
    file = describe(path).path.resolve()
    try:
        with _quiet(transformers):
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(file.parent),
                gguf_file=str(file),
                dtype=torch.float32,
                # Dense weights and no GGUF quantizer left on the model: with one attached,
                # save_pretrained refuses to write, and where transformers has kernels for a file's
                # blocks it would otherwise leave the weights packed.
                quantization_config=transformers.GgufConfig(dequantize=True),
            )
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(file.parent), gguf_file=str(file))
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise GGUFError.caused_by(path, "transformers could not load it", error) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


@contextlib.contextmanager
def _quiet(transformers) -> Iterator[None]:
    """transformers' warnings and progress bars off while loading, as they were afterwards.

    Its GGUF dequantizer draws a tqdm bar of its own that disable_progress_bar() does not reach,
    so stderr is set aside too.
    """
    verbosity = transformers.logging.get_verbosity()
    progress_bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if progress_bars:
            transformers.utils.logging.enable_progress_bar()
