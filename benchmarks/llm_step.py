"""One full fine-tuning step (forward, backward, AdamW) of a causal LM per recipe, timed against
fp32 in one process, with what the step holds in memory beside it.

    python benchmarks/llm_step.py [--model smollm2-135m] [--batch 8] [--seq 256]
                                  [--recipes int16,int8,int8-mixed,int4-hq] [--pairs 3] [--threads 2]

The model (by default SmolLM2-135M-Instruct from its pinned GGUF, dequantized to float32) is
copied once per recipe and converted as `intcore finetune-lm` converts it (the output head stays
float). Steps alternate, fp32 then each recipe, so the machine's drift cancels in the per-pair
ratios; the figure is their median. Memory: the tensors saved for backward at the end of the
forward and at their peak, the gradients and the AdamW state, from intcore.memory.measure_step
on the first step of each recipe.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--recipes", default="int16,int8,int8-mixed,int4-hq")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    import intcore
    from intcore.drivers import llm_model, recipe_setup

    torch.set_num_threads(args.threads)
    base, _, name, _ = llm_model.load_causal_lm(args.model)
    ids = torch.randint(0, base.config.vocab_size, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    steps, memory = {}, {}
    for recipe in ["fp32"] + args.recipes.split(","):
        torch.manual_seed(0)
        model = recipe_setup.apply(copy.deepcopy(base), recipe, skip="lm_head").train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

        def loss(model=model, recipe=recipe):
            with recipe_setup.forward_context(recipe, ids.device):
                return model(input_ids=ids, labels=ids).loss

        def step(model=model, opt=opt, loss=loss):
            opt.zero_grad(set_to_none=True)
            loss().backward()
            opt.step()

        memory[recipe] = intcore.memory.measure_step(model, loss, opt)  # also the warm-up step
        steps[recipe] = step
    times: dict = {recipe: [] for recipe in steps}
    for _ in range(args.pairs):
        for recipe, step in steps.items():
            start = time.perf_counter()
            step()
            times[recipe].append(time.perf_counter() - start)
    mb = intcore.memory.MB
    print(f"{name}, batch {args.batch} x {args.seq}, {args.threads} threads, torch {torch.__version__}, "
          f"CPU {intcore.cpu_kernels.cpu_model()} ({intcore._C.cpu_kernel()}), {args.pairs} alternating steps per recipe")
    print(f"{'recipe':<11} {'median s':>8} {'vs fp32':>8} {'activations MB':>15} {'peak act. MB':>13} "
          f"{'grads MB':>9} {'AdamW MB':>9}")
    for recipe, ts in times.items():
        ratio = statistics.median(t / f for t, f in zip(ts, times["fp32"]))
        m = memory[recipe]
        print(f"{recipe:<11} {statistics.median(ts):>8.2f} {ratio:>7.2f}x {m.activations / mb:>15.0f} "
              f"{m.peak_activations / mb:>13.0f} {m.gradients / mb:>9.0f} {m.optimizer_state / mb:>9.0f}")


if __name__ == "__main__":
    main()
