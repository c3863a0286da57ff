"""llama.cpp with intcore's GGUF LoRA adapter against intcore's merged float model: next-token
logits on held-out text.

    pip install llama-cpp-python==0.3.36          # builds llama.cpp from source (minutes)
    python benchmarks/llamacpp_lora.py RUN_DIR --run qdylora-gguf-fp32 [--tokens 1000]

RUN_DIR is an `intcore finetune-lm --method lora|qdylora` output directory whose model came from
a .gguf file: the run's adapters/<run>-rank<b>.gguf is applied by llama.cpp over that file, and
models/<run>/ (the base merged with the adapter at the same rank, float32) is run by transformers.
Both see the same token ids (the held-out tenth of Shakespeare by default, in windows of
--window tokens); the script prints top-1 agreement and the largest logit difference, for the base
file alone (no adapter) and with the adapter, so the adapter's effect is read against llama.cpp's
own 4-bit arithmetic (its activations are quantized to 8 bits per block of 32): with the adapter
llama.cpp should agree with the merged model far better than without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def windows(tokens: list[int], total: int, window: int) -> list[list[int]]:
    tokens = tokens[:total]
    return [tokens[i:i + window] for i in range(0, len(tokens), window)]


def intcore_logits(directory: Path, chunks: list[list[int]]) -> np.ndarray:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.no_grad():
        return np.concatenate([model(input_ids=torch.tensor([c])).logits[0].numpy() for c in chunks])


def llamacpp_logits(model_path: Path, adapter: Path | None, chunks: list[list[int]], window: int) -> np.ndarray:
    from llama_cpp import Llama

    kwargs = {"lora_path": str(adapter), "lora_scale": 1.0} if adapter else {}
    llm = Llama(model_path=str(model_path), n_ctx=window, logits_all=True, verbose=False, n_threads=2, **kwargs)
    out = []
    for chunk in chunks:
        llm.reset()
        llm.eval(chunk)
        out.append(np.array(llm.scores[: len(chunk)], dtype=np.float32))
    return np.concatenate(out)


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    return {"top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()), "max_abs_diff": float(np.abs(a - b).max()),
            "mean_abs_diff": float(np.abs(a - b).mean()), "tokens": int(a.shape[0])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--run", required=True, help="the lora/qdylora run of RUN_DIR to check")
    p.add_argument("--tokens", type=int, default=1000)
    p.add_argument("--window", type=int, default=250, help="tokens per forward (each window starts afresh)")
    p.add_argument("--output", type=Path, help="write the figures to this JSON file")
    args = p.parse_args(argv)

    import transformers

    from intcore import assets
    from intcore.drivers import llm_model

    results = json.loads((args.run_dir / "results.json").read_text())
    adapters = results["recipes"][args.run]["adapters"]
    model_path = llm_model.resolve(results["args"]["model"])
    if "gguf" not in adapters:
        sys.exit(f"{args.run} has no GGUF adapter (its model did not come from a .gguf file)")
    merged = args.run_dir / "models" / args.run
    tokenizer = transformers.AutoTokenizer.from_pretrained(merged)
    text = "".join(text[int(len(text) * 0.9):] for text in assets.shakespeare().values())
    ids = tokenizer(text[: args.tokens * 8], add_special_tokens=False)["input_ids"]
    chunks = windows(ids, args.tokens, args.window)
    ours = intcore_logits(merged, chunks)
    figures = {"with_adapter": compare(llamacpp_logits(model_path, Path(adapters["gguf"]), chunks, args.window), ours),
               "base_only": compare(llamacpp_logits(model_path, None, chunks, args.window), ours),
               "adapter": adapters["gguf"], "rank": adapters["best_rank"], "model": str(model_path)}
    print(json.dumps(figures, indent=2))
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
