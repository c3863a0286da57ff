"""Where a BERT training step's time goes, per recipe: forward, backward and optimizer, and the
step's operator time grouped by what it does (integer linear layers, layer norm, embedding,
float GEMMs, attention, dropout, optimizer, the rest).

    python benchmarks/step_profile.py [--model minilm|bert-base] [--batch 8] [--seq 128]
                                      [--recipes fp32,int16,int8] [--threads 1]

Times are the process's CPU time (``time.thread_time``) with one thread, the default, so that
the figures hold on a machine shared with other jobs (wall time with --threads above 1); the grouped shares come from
``torch.profiler`` (self time of every operator, summed by group) over one more step. Each
recipe runs in its own subprocess. Models are randomly initialized, so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

ARCHITECTURES = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
}

# Operator name fragments -> group, first match wins. intcore's custom ops appear under their op
# name and under their autograd nodes' names; both count for the op's group.
GROUPS = (
    ("intcore linear", ("fixed_point_linear", "int8_linear", "int4_linear", "hq_linear")),
    ("intcore layer norm", ("fixed_point_layer_norm",)),
    ("intcore embedding", ("fixed_point_embedding",)),
    ("float GEMM", ("aten::mm", "aten::addmm", "aten::linear", "aten::matmul")),
    ("attention", ("bmm", "softmax", "scaled_dot_product", "baddbmm")),
    ("dropout", ("bernoulli", "dropout")),
    ("float layer norm", ("layer_norm",)),
    ("optimizer", ("Optimizer", "sqrt", "addcdiv", "addcmul", "lerp", "_foreach")),
)


def group_of(name: str) -> str:
    for group, fragments in GROUPS:
        if any(f in name for f in fragments):
            return group
    return "other"


def worker(args) -> dict:
    import torch
    import transformers

    import intcore

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30522, num_labels=2, **ARCHITECTURES[args.model])
    model = transformers.BertForSequenceClassification(config).train()
    if args.recipe != "fp32":
        intcore.convert(model, args.recipe, skip="classifier")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    ids = torch.randint(1, 30522, (args.batch, args.seq))
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (args.batch,))

    clock = time.thread_time if args.threads == 1 else time.perf_counter  # CPU time needs one thread

    def step(parts=None):
        opt.zero_grad(set_to_none=True)
        t0 = clock()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        t1 = clock()
        loss.backward()
        t2 = clock()
        opt.step()
        t3 = clock()
        if parts is not None:
            parts.append((t1 - t0, t2 - t1, t3 - t2))

    step()  # warm-up: allocations, optimizer state
    parts: list = []
    for _ in range(args.steps):
        step(parts)
    forward, backward, optimizer = (min(p[i] for p in parts) for i in range(3))
    with torch.profiler.profile() as prof:
        step()
    groups: dict = {}
    for event in prof.key_averages():
        groups[group_of(event.key)] = groups.get(group_of(event.key), 0.0) + event.self_cpu_time_total
    total = sum(groups.values()) or 1.0
    return {"recipe": args.recipe, "forward": forward, "backward": backward, "optimizer": optimizer,
            "shares": {g: v / total for g, v in groups.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(ARCHITECTURES), default="minilm")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per recipe (fastest reported)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--recipes", default="fp32,int16,int8")
    parser.add_argument("--recipe", help=argparse.SUPPRESS)  # set in the per-recipe subprocess
    args = parser.parse_args()
    if args.recipe:
        print(json.dumps(worker(args)))
        return

    import torch

    clock = "CPU" if args.threads == 1 else "wall"
    print(f"{args.model}, batch {args.batch} x {args.seq} tokens, {clock} time with {args.threads} thread(s), "
          f"torch {torch.__version__}")
    results = []
    for recipe in args.recipes.split(","):
        cmd = [sys.executable, __file__, "--recipe", recipe, "--model", args.model, "--batch", str(args.batch),
               "--seq", str(args.seq), "--steps", str(args.steps), "--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{recipe}: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
        results.append(json.loads(done.stdout.splitlines()[-1]))
    baseline = None
    print(f"\n{'recipe':<10}{'forward s':>11}{'backward s':>12}{'optimizer s':>13}{'step s':>9}{'vs fp32':>9}")
    for r in results:
        step = r["forward"] + r["backward"] + r["optimizer"]
        baseline = baseline or (step if r["recipe"] == "fp32" else None)
        ratio = f"{step / baseline:8.2f}x" if baseline else ""
        print(f"{r['recipe']:<10}{r['forward']:11.3f}{r['backward']:12.3f}{r['optimizer']:13.3f}{step:9.3f}{ratio:>9}")
    names = [g for g, _ in GROUPS] + ["other"]
    width = max(9, *(len(r["recipe"]) + 1 for r in results))
    print(f"\nshare of operator time (torch.profiler, one step)\n{'group':<20}"
          + "".join(f"{r['recipe']:>{width}}" for r in results))
    for g in names:
        if any(r["shares"].get(g, 0) > 0.0005 for r in results):
            print(f"{g:<20}" + "".join(f"{100 * r['shares'].get(g, 0):{width - 1}.1f}%" for r in results))


if __name__ == "__main__":
    main()
