"""The causal LM a driver starts from: --model as the built-in name, a .gguf file or a Hugging
Face directory, loaded once per process in float32 with its tokenizer."""

from __future__ import annotations

from pathlib import Path

from intcore import assets
from intcore.drivers import distributed
from intcore.drivers.errors import DriverError

DEFAULT_MODEL = "smollm2-135m"


def resolve(source: str, world: distributed.World = distributed.World()) -> Path:
    """The file or directory --model names; the built-in model is downloaded by rank 0 first."""
    if source == DEFAULT_MODEL:
        if world.is_main:
            assets.smollm2_gguf()
        distributed.barrier(world)
        return assets.smollm2_gguf()
    path = Path(source)
    if not path.exists():
        raise DriverError(f"--model {source}: no such file or directory; give {DEFAULT_MODEL}, a .gguf file or a "
                          f"Hugging Face model directory")
    return path


def load_causal_lm(source: str, world: distributed.World = distributed.World(), q4_blocks: bool = False):
    """(model in float32 and train mode, tokenizer with a pad token, a display name, the GGUF file
    it came from or None). q4_blocks: keep a GGUF file's Q4_0/Q4_1 blocks beside the layers loaded
    from them (intcore.gguf.attach_q4_blocks), for a LoRA base that uses them as they are."""
    import transformers

    path = resolve(source, world)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if path.is_file():
        from intcore import gguf

        try:
            model, tokenizer = gguf.load_causal_lm(path)
            if q4_blocks:
                gguf.attach_q4_blocks(model, path)
        except gguf.GGUFError as e:
            raise DriverError(f"--model: {e}") from None
        name, source_file = path.stem, path
    else:
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype="float32")
            tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, KeyError) as e:
            raise DriverError(f"--model {source} is not a Hugging Face causal-LM directory "
                              f"({str(e).splitlines()[0]})") from None
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        name, source_file = path.name, None
    return model.float().train(), tokenizer, name, source_file
