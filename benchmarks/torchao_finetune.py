"""Fine-tune with torchao's int8 mixed-precision training through intcore's own driver, so its
accuracy sits beside intcore's recipes on the same data, schedule, seed and evaluation.

    pip install torchao            # benchmark-only; intcore does not depend on it
    python benchmarks/torchao_finetune.py --output runs/torchao-int8 [any intcore finetune option]

It runs `intcore finetune --recipe fp32` with one extra method, "torchao-int8": every linear layer
but the classifier swapped for torchao's `Int8MixedPrecisionTrainingConfig(module_swap=True)`
(int8 forward and both backward GEMMs), with contiguous inputs and output gradients as
benchmarks/vs_torchao.py explains. Results land in --output as for any run.
"""

from __future__ import annotations

import sys

import vs_torchao  # benchmarks/, the script's own directory, is on sys.path

from intcore.drivers import finetune, methods


def _torchao(model, recipe, args):
    if recipe != "fp32":
        raise SystemExit("torchao_finetune.py: torchao-int8 runs on the fp32 recipe only (--recipe fp32)")
    return vs_torchao.contiguous_torchao(model)


def main() -> int:
    methods.METHODS["torchao-int8"] = methods.Method(
        "torchao-int8", "torchao int8 mixed-precision training (benchmark only)", _torchao)
    argv = sys.argv[1:]
    if "--method" not in argv:
        argv += ["--method", "torchao-int8"]
    if "--recipe" not in argv and "--recipes" not in argv:
        argv += ["--recipe", "fp32"]
    return finetune.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
