"""llama.cpp with intcore's GGUF LoRA adapter against intcore's merged float model: next-token
logits on held-out text.

    pip install llama-cpp-python==0.3.36          # builds llama.cpp from source (minutes)
    python benchmarks/llamacpp_lora.py RUN_DIR --run qdylora-gguf-fp32 [--tokens 1000]

RUN_DIR is an `intcore finetune-lm --method lora|qdylora` output directory whose model came from
a .gguf file: the run's adapters/<run>-rank<b>.gguf is applied by llama.cpp over that file, and
models/<run>/ (the base merged with the adapter at the same rank, float32) is run by transformers.
Both see the same token ids (the held-out tenth of Shakespeare by default, in windows of --window
tokens). The script prints top-1 agreement and logit differences for four llama.cpp runs:

    f32 file + adapter    against the merged model: does llama.cpp apply our adapter as we do?
    f32 file alone        against intcore's float base: the two implementations' floor
    gguf file + adapter   against the merged model: what a user serving the 4-bit file gets
    gguf file alone       against intcore's float base: the floor of llama.cpp's 4-bit arithmetic

The f32 file is the .gguf's own weights dequantized (gguf-py) and written as float32, so llama.cpp
runs the same weights without its 4-bit kernels, which multiply Q4 blocks by activations rounded to
8 bits per block of 32. The KV cache is float32 in every run (llama.cpp's default is fp16).

Then, without llama.cpp, how far apart two implementations of those 8-bit activation blocks land:
intcore's float base with every linear layer's input rounded to 8-bit blocks as ggml's reference
quantizer does (q = roundf(x * (1 / d)), halves away from zero) against the same with llama.cpp's
x86 quantizer (q = x * (127 / amax) rounded half to even). The two codes differ only where the
scaled value lands on a half or within a float32 ulp of one, yet the requantization in every layer
carries each changed code on into the logits.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

GGML_TYPE_F32 = 0  # llama.cpp's type id for a float32 KV cache


def windows(tokens: list[int], total: int, window: int) -> list[list[int]]:
    tokens = tokens[:total]
    return [tokens[i:i + window] for i in range(0, len(tokens), window)]


def write_f32_copy(source: Path, target: Path) -> None:
    """The GGUF file at source with every tensor dequantized to float32 (metadata kept)."""
    import gguf

    reader = gguf.GGUFReader(source)
    writer = gguf.GGUFWriter(target, reader.fields["general.architecture"].contents())
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue  # written by GGUFWriter itself
        kind = field.types[0]
        value = 0 if field.name == "general.file_type" else field.contents()  # 0: all float32
        writer.add_key_value(field.name, value, kind, sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    for tensor in reader.tensors:
        weights = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        writer.add_tensor(tensor.name, weights.reshape([int(n) for n in reversed(tensor.shape)]))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def transformers_logits(model, chunks: list[list[int]]) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model(input_ids=torch.tensor([c])).logits[0].float().numpy() for c in chunks])


def llamacpp_logits(model_path: Path, adapter: Path | None, chunks: list[list[int]], window: int) -> np.ndarray:
    from llama_cpp import Llama

    kwargs = {"lora_path": str(adapter), "lora_scale": 1.0} if adapter else {}
    llm = Llama(model_path=str(model_path), n_ctx=window, logits_all=True, verbose=False, n_threads=2,
                type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, **kwargs)
    out = []
    for chunk in chunks:
        llm.reset()
        llm.eval(chunk)
        out.append(np.array(llm.scores[: len(chunk)], dtype=np.float32))
    return np.concatenate(out)


def q8_round_trip(x: torch.Tensor, ties: str) -> torch.Tensor:
    """x in 8-bit blocks of 32 along its last dimension (fp16 scale d = amax / 127), dequantized:
    rounded as ggml's reference quantizer rounds (ties="away": q = roundf(x * (1 / d))) or as
    llama.cpp's x86 AVX quantizer does (ties="even": q = x * (127 / amax), halves to even)."""
    from intcore.gguf.q8_blocks import quantize_q8_blocks

    if ties == "away":
        b = quantize_q8_blocks(x)
        return (b.codes.float() * b.scales[..., None]).reshape(x.shape)
    blocks = x.float().reshape(*x.shape[:-1], -1, 32)
    amax = blocks.abs().amax(-1, keepdim=True)
    codes = torch.round(blocks * torch.where(amax > 0, 127 / amax, torch.zeros_like(amax)))
    return (codes * (amax / 127).half().float()).reshape(x.shape)


def q8_activation_logits(model, chunks: list[list[int]], ties: str) -> np.ndarray:
    """Logits of the float model with every linear layer's input through q8_round_trip."""
    hooks = [m.register_forward_pre_hook(lambda module, args: (q8_round_trip(args[0], ties),))
             for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        return transformers_logits(model, chunks)
    finally:
        for h in hooks:
            h.remove()


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

    from intcore import assets, gguf
    from intcore.drivers import llm_model

    results = json.loads((args.run_dir / "results.json").read_text())
    adapters = results["recipes"][args.run]["adapters"]
    model_path = llm_model.resolve(results["args"]["model"])
    if "gguf" not in adapters:
        sys.exit(f"{args.run} has no GGUF adapter (its model did not come from a .gguf file)")
    adapter = Path(adapters["gguf"])
    merged = args.run_dir / "models" / args.run
    tokenizer = transformers.AutoTokenizer.from_pretrained(merged)
    text = "".join(text[int(len(text) * 0.9):] for text in assets.shakespeare().values())
    ids = tokenizer(text[: args.tokens * 8], add_special_tokens=False)["input_ids"]
    chunks = windows(ids, args.tokens, args.window)
    ours_merged = transformers_logits(
        transformers.AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval(), chunks)
    base = gguf.load_causal_lm(model_path)[0].eval()
    ours_base = transformers_logits(base, chunks)

    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        f32_path = Path(tmp) / "f32.gguf"
        write_f32_copy(model_path, f32_path)
        for name, path in (("f32", f32_path), ("gguf", model_path)):
            figures[f"{name}_file_with_adapter"] = compare(llamacpp_logits(path, adapter, chunks, args.window), ours_merged)
            figures[f"{name}_file_alone"] = compare(llamacpp_logits(path, None, chunks, args.window), ours_base)
            print(name, json.dumps({k: v for k, v in figures.items() if k.startswith(name)}), flush=True)
    away, even = (q8_activation_logits(base, chunks, ties) for ties in ("away", "even"))
    figures["q8_ties_away_vs_even"] = compare(away, even)
    figures["q8_ties_away_vs_float"] = compare(away, ours_base)
    figures["q8_ties_even_vs_float"] = compare(even, ours_base)
    figures.update({"adapter": str(adapter), "rank": adapters["best_rank"], "model": str(model_path)})
    print(json.dumps(figures, indent=2))
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
