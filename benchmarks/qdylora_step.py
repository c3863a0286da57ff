"""One QDyLoRA training step (forward, backward, AdamW on the adapters) per base format, next to
full fp32 fine-tuning, on the same batch, in one run.

    python benchmarks/qdylora_step.py [--model minilm|bert-base] [--batch 32] [--seq 64] [--steps 5]

Models are randomly initialized with the named architecture (nothing is downloaded). Every
linear layer of the encoder carries rank-8 LoRA factors over a frozen base: fp32 (float
nn.Linear), nf4 (dequantized on the fly) or int4 (int8 GEMMs on int4 codes). Prints the median
step time and the base weights' bytes per format.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import transformers

import intcore

ARCHITECTURES = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
}


def step_seconds(model, ids, labels, steps: int) -> float:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for _ in range(steps + 1):  # the first step warms up
        start = time.perf_counter()
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(ARCHITECTURES), default="minilm")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    config = transformers.BertConfig(vocab_size=30522, num_labels=2, **ARCHITECTURES[args.model])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (args.batch, args.seq), generator=g)
    labels = torch.randint(0, 2, (args.batch,), generator=g)
    rows = []
    for base in ("full", "fp32", "nf4", "int4"):
        torch.manual_seed(0)
        model = transformers.BertForSequenceClassification(config).train()
        if base != "full":
            intcore.peft.wrap_qdylora(model, intcore.peft.QDyLoraConfig(r_max=8, base=base))
        seconds = step_seconds(model, ids, labels, args.steps)
        storage = intcore.peft.base_storage(model) if base != "full" else None
        label = "full fine-tuning, fp32" if base == "full" else f"qdylora, {base} base"
        rows.append((label, seconds, storage))
    print(f"{args.model}, batch {args.batch} x {args.seq}, {torch.get_num_threads()} threads; median of {args.steps} steps")
    print(f"{'':24}  {'step s':>7}  {'base MB':>8}  {'x fp32':>6}")
    for label, seconds, storage in rows:
        mb, ratio = ("", "") if storage is None else (f"{storage['bytes'] / 1e6:.2f}", f"{storage['ratio']:.3f}")
        print(f"{label:24}  {seconds:7.3f}  {mb:>8}  {ratio:>6}")


if __name__ == "__main__":
    main()
