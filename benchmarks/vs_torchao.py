"""intcore's int8 training next to torchao's int8 mixed-precision training, on the CPU, in one
process: an MLP block (forward and backward) and one MiniLM-L6 training step (AdamW).

    pip install torchao            # benchmark-only; intcore does not depend on it
    python benchmarks/vs_torchao.py [--threads 1] [--tokens 2048] [--batch 32] [--seq 64]

Rows: fp32 (torch), torchao int8 mixed precision (`Int8MixedPrecisionTrainingConfig(
module_swap=True)`: int8 `torch._int_mm` for the forward and both backward GEMMs, row-wise
absmax scales), intcore int8 (dynamic fixed point with per-row exponents, fixed-point layer norm
and embedding: the `int8` recipe) and intcore int8-per-tensor (fixed-point linear layers only,
one exponent per tensor). torchao's default tensor-subclass path is not used: with torch 2.13
it falls back to fp32 matmuls without saying so. Its module-swap layers need contiguous inputs
and output gradients, which Hugging Face's BERT does not always give; the benchmark wraps them.

Times are the fastest of --repeats: process CPU time (``time.thread_time``) with one thread (the
default), which holds on a machine shared with other jobs; wall time with more threads.
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
import warnings


CLOCK = time.thread_time  # one thread: the process's CPU time; more: wall time


def cpu_seconds(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = CLOCK()
        fn()
        best = min(best, CLOCK() - start)
    return best


class _ContiguousGrad(__import__("torch").autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


def contiguous_torchao(model):
    """torchao's int8 mixed-precision linear layers with contiguous inputs and output gradients."""
    import torch
    from torchao import quantize_
    from torchao.prototype.quantized_training import Int8MixedPrecisionTrainingConfig

    quantize_(model, Int8MixedPrecisionTrainingConfig(module_swap=True),
              filter_fn=lambda m, name: isinstance(m, torch.nn.Linear) and "classifier" not in name)
    for module in model.modules():
        if type(module).__name__ == "Int8MixedPrecisionTrainingLinear":
            forward = module.forward
            module.forward = (lambda f: lambda x: _ContiguousGrad.apply(f(x.contiguous())))(forward)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=2048, help="rows through the MLP block")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    import torch
    import transformers

    import intcore

    try:
        import torchao  # noqa: F401
    except ImportError:
        raise SystemExit("vs_torchao.py needs torchao: pip install torchao")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    global CLOCK
    CLOCK = time.thread_time if args.threads == 1 else time.perf_counter
    print(f"{'CPU' if args.threads == 1 else 'wall'} time, {args.threads} thread(s); torch {torch.__version__}, torchao {torchao.__version__}, "
          f"intcore {intcore.__version__}")

    # ---- MLP block: 768 -> 3072 -> 768 with GELU, forward and backward ----
    mlp = torch.nn.Sequential(torch.nn.Linear(768, 3072), torch.nn.GELU(), torch.nn.Linear(3072, 768))
    x = torch.randn(args.tokens, 768)

    def block_step(model):
        def run():
            xi = x.clone().requires_grad_()
            model(xi).square().mean().backward()
        return run

    report(f"MLP block, {args.tokens} tokens, 768 -> 3072 -> 768, forward + backward", mlp, None, block_step,
           args.repeats)

    # ---- one MiniLM-L6 training step ----
    config = transformers.BertConfig(vocab_size=30522, num_labels=2, hidden_size=384, num_hidden_layers=6,
                                     num_attention_heads=12, intermediate_size=1536)
    bert = transformers.BertForSequenceClassification(config).train()
    ids = torch.randint(1, 30522, (args.batch, args.seq))
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (args.batch,))

    def train_step(model):
        opt = torch.optim.AdamW(model.parameters(), lr=2e-5)

        def run():
            opt.zero_grad(set_to_none=True)
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            opt.step()
        return run

    report(f"MiniLM-L6 training step, batch {args.batch} x {args.seq} tokens, AdamW", bert, "classifier", train_step,
           args.repeats)


def report(title: str, model, skip, step_of, repeats: int) -> None:
    """Times step_of(variant) for the model in fp32, torchao int8 mixed precision, intcore int8
    and intcore int8-per-tensor (`skip`: modules intcore leaves in float), against fp32's speed."""
    import intcore

    variants = {
        "fp32": copy.deepcopy(model),
        "torchao int8 mixed precision": contiguous_torchao(copy.deepcopy(model)),
        "intcore int8": intcore.convert(copy.deepcopy(model), "int8", skip=skip),
        "intcore int8-per-tensor": intcore.convert(copy.deepcopy(model), "int8-per-tensor", skip=skip),
    }
    print(f"\n{title}")
    base = None
    for name, variant in variants.items():
        seconds = cpu_seconds(step_of(variant), repeats)
        base = base or seconds
        print(f"  {name:<30}{seconds:8.3f} s{base / seconds:8.2f}x fp32's speed")

if __name__ == "__main__":
    main()
