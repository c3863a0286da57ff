"""`intcore generate`: text from a fine-tuned causal LM, or from a base model.

    intcore generate runs/lm --prompt "What is the capital of France?"      # every exported run
    intcore generate runs/lm/models/int8 --prompt "To be, or not" --raw     # one run, no chat template
    intcore generate smollm2-135m --prompt "Hello"                          # the base model (float)

MODEL is an `intcore finetune-lm` output directory (its models/ are used), one models/<run>/
directory (run in its recipe's arithmetic, as intcore.json says), the built-in smollm2-135m, a
.gguf file or a Hugging Face directory. The prompt is a user turn of the model's chat template
where it has one (--raw: the text as it is). Decoding is greedy unless --temperature is given,
and the recipes round to nearest in generation, so a run repeats itself exactly.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import torch

from intcore.drivers import distributed, export, help_text, llm_model
from intcore.drivers.errors import DriverError, run_cli


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="intcore generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="a finetune-lm output or model directory, smollm2-135m, a .gguf "
                                                  "file or a Hugging Face directory")
    p.add_argument("--prompt", action="append", required=True, help="a prompt (repeat for more)")
    p.add_argument("--runs", help="comma-separated runs of an output directory (default: every exported run)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, help="sample at this temperature (default: greedy decoding)")
    p.add_argument("--seed", type=int, default=0, help="the sampling seed (with --temperature)")
    p.add_argument("--raw", action="store_true", help="the prompt as plain text, without the chat template")
    p.add_argument("--device", default="cpu")
    help_text.show_defaults(p)
    args = p.parse_args(argv)
    if args.max_new_tokens < 1:
        raise DriverError("--max-new-tokens must be at least 1")
    if args.temperature is not None and not args.temperature > 0:
        raise DriverError("--temperature must be positive")
    return args


def _models(args, device: torch.device):
    """(name, model in eval mode, tokenizer) for each model MODEL names."""
    root = Path(args.model)
    if root.is_dir() and ((root / export.RECORD).is_file() or (root / "models").is_dir()):
        runs = [r.strip() for r in args.runs.split(",") if r.strip()] if args.runs else None
        for run, directory in export.find(args.model, runs, "generate").items():
            model, tokenizer, record = export.load(directory, device, "generate")
            if not record.causal:
                raise DriverError(f"{directory} is a sequence classifier ({record.task}); intcore predict runs it")
            yield f"{run} ({record.recipe})", model, tokenizer
        return
    if args.runs:
        raise DriverError("--runs selects runs of an intcore finetune-lm output directory")
    model, tokenizer, name, _ = llm_model.load_causal_lm(args.model)
    yield f"{name} (float)", model.to(device).eval(), tokenizer


def render(tokenizer, prompt: str, raw: bool) -> str:
    if raw or not getattr(tokenizer, "chat_template", None):
        return prompt
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


@torch.no_grad()
def generate(model, tokenizer, text: str, args, device: torch.device) -> str:
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=not getattr(tokenizer, "chat_template", None))
    ids = {k: v.to(device) for k, v in ids.items()}
    sampling = {"do_sample": True, "temperature": args.temperature} if args.temperature else {"do_sample": False}
    torch.manual_seed(args.seed)
    out = model.generate(**ids, max_new_tokens=args.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                         top_p=None, top_k=None, **sampling)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    device = distributed.parse_device(args.device)
    for name, model, tokenizer in _models(args, device):
        for prompt in args.prompt:
            print(f"[{name}] {prompt}\n{generate(model, tokenizer, render(tokenizer, prompt, args.raw), args, device)}\n",
                  flush=True)
    return 0


def cli(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli("generate", main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())
