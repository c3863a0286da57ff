"""One BERT fine-tuning step (forward + backward + AdamW) per recipe, on the same batch, in one run.

    python benchmarks/finetune_step.py [--model bert-base|minilm] [--batch 8] [--seq 128]
                                       [--recipes fp32,bf16,int16,int12,int10,int8,int8-mixed]
                                       [--portable]

Each recipe runs in its own subprocess so that peak memory is its own: peak RSS on the CPU,
torch.cuda.max_memory_allocated on a GPU. "bf16" is float weights under torch.autocast; the
others are intcore.convert recipes (the classifier stays float). Models are randomly
initialized with the named architecture, so nothing is downloaded. With --portable every intcore
recipe also runs with INTCORE_BACKEND=portable (the portable torch kernels instead of the native
engine): the portable path exists for correctness on any device, and this records its cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ARCHITECTURES = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
}
DEFAULT_RECIPES = "fp32,bf16,int16,int12,int10,int8,int8-mixed"


def worker(args) -> dict:
    import torch
    import transformers

    import intcore

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30522, num_labels=2, **ARCHITECTURES[args.model])
    model = transformers.BertForSequenceClassification(config).to(args.device).train()
    if args.recipe != "bf16":
        intcore.convert(model, args.recipe, skip="classifier")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    ids = torch.randint(1, 30522, (args.batch, args.seq), device=args.device)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (args.batch,), device=args.device)
    autocast = torch.autocast(device_type=torch.device(args.device).type, dtype=torch.bfloat16,
                              enabled=args.recipe == "bf16")

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    step()  # warm-up: allocations, optimizer state
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    if args.device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"recipe": args.recipe, "step_s": sorted(times)[len(times) // 2], "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(ARCHITECTURES), default="bert-base")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per recipe (median reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--recipes", default=DEFAULT_RECIPES)
    parser.add_argument("--portable", action="store_true", help="also time intcore recipes on the portable kernels")
    parser.add_argument("--recipe", help=argparse.SUPPRESS)  # set in the per-recipe subprocess
    args = parser.parse_args()

    if args.recipe:
        print(json.dumps(worker(args)))
        return

    import torch

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"{args.model}, batch {args.batch} x {args.seq} tokens, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    memory = "peak GPU MB" if args.device.startswith("cuda") else "peak RSS MB"
    print(f"{'recipe':<22}{'step s':>9}{'vs fp32':>9}{memory:>13}")
    baseline = None
    failed = []
    runs = []
    for recipe in args.recipes.split(","):
        runs.append((recipe, "native"))
        if args.portable and recipe not in ("fp32", "bf16"):
            runs.append((recipe, "portable"))
    for recipe, kernels in runs:
        cmd = [sys.executable, __file__, "--recipe", recipe, "--model", args.model, "--batch", str(args.batch),
               "--seq", str(args.seq), "--steps", str(args.steps), "--device", args.device]
        env = {**os.environ, "INTCORE_BACKEND": kernels}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        name = recipe if kernels == "native" else f"{recipe} (portable)"
        if done.returncode != 0:  # one recipe failing (on a new device, say) still leaves the others' figures
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"{name:<22} failed: {last}", flush=True)
            failed.append(name)
            continue
        result = json.loads(done.stdout.splitlines()[-1])
        baseline = baseline or (result["step_s"] if recipe == "fp32" else None)
        ratio = f"{baseline / result['step_s']:8.2f}x" if baseline else f"{'':>9}"
        print(f"{name:<22}{result['step_s']:9.3f}{ratio}{result['peak_mb']:13.0f}", flush=True)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
