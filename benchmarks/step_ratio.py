"""Step time of integer recipes against fp32, measured so that the machine's drift cancels: one
process holds a model per recipe (same initialization), and their training steps alternate,
fp32 then each recipe, pair after pair; the figure is the median of the per-pair ratios.

    python benchmarks/step_ratio.py [--model minilm|bert-base] [--batch 8] [--seq 128]
                                    [--recipes int8,int16] [--pairs 15] [--threads 2]

"bf16" in --recipes is float weights under torch.autocast (bfloat16), as in finetune_step.py.

On a shared or noisy CPU, wall times of separate runs vary by ~10%; ratios of neighbouring
steps do not drift with the machine. Models are randomly initialized (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import statistics
import time

from finetune_step import ARCHITECTURES  # benchmarks/, the script's own directory, is on sys.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(ARCHITECTURES), default="minilm")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--recipes", default="int8,int16")
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    import transformers

    import intcore

    torch.set_num_threads(args.threads)
    config = transformers.BertConfig(vocab_size=30522, num_labels=2, **ARCHITECTURES[args.model])
    steps = {}
    for recipe in ["fp32"] + args.recipes.split(","):
        torch.manual_seed(0)
        model = transformers.BertForSequenceClassification(config).train()
        if recipe not in ("fp32", "bf16"):
            intcore.convert(model, recipe, skip="classifier")
        opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe == "bf16")

        def step(model=model, opt=opt, autocast=autocast):
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            opt.step()

        steps[recipe] = step
    ids = torch.randint(1, 30522, (args.batch, args.seq))
    mask, labels = torch.ones_like(ids), torch.randint(0, 2, (args.batch,))
    for step in steps.values():  # warm-up: allocations, optimizer state
        step()
    times: dict = {recipe: [] for recipe in steps}
    for _ in range(args.pairs):
        for recipe, step in steps.items():
            start = time.perf_counter()
            step()
            times[recipe].append(time.perf_counter() - start)
    print(f"{args.model}, batch {args.batch} x {args.seq}, {args.threads} threads, torch {torch.__version__}, "
          f"{args.pairs} alternating steps per recipe")
    print(f"{'recipe':<12} {'median step s':>13} {'vs fp32 (median of pair ratios)':>32} {'min':>6} {'max':>6}")
    for recipe, ts in times.items():
        ratios = [t / f for t, f in zip(ts, times["fp32"])]
        print(f"{recipe:<12} {statistics.median(ts):>13.3f} {statistics.median(ratios):>31.2f}x "
              f"{min(ratios):>5.2f}x {max(ratios):>5.2f}x")


if __name__ == "__main__":
    main()
