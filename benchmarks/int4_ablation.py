"""Where INT4 training loses accuracy: fine-tune with one switch of the int4-hq recipe changed at a
time, through intcore's own driver (same data, schedule, seed and evaluation as every recipe).

    python benchmarks/int4_ablation.py --variants fwd-only,no-lss,hq-lss --output runs/int4-ablation \
        [any intcore finetune option, e.g. --epochs 1 --lr 1e-4]

Each variant runs as `intcore finetune --recipe fp32 --method int4-<variant>` into
--output/<variant>/ (results.json, curves; a variant whose results.json exists is not run
again), then one table prints every variant's test accuracy and F1 and --output/ablation.png
plots them (with `--fp32 ACC`, the fp32 accuracy of the same schedule, as a line). Variants
(`--variants help` lists them):

    fwd-only     HQ int4 forward; backward in float (straight-through: dX = G W, dW = G^T X)
    no-lss       HQ forward, bit-split int4 gradients, every digit row kept (no sampling)
    hq-lss       the paper's method: bit splitting + LSS (budget 0.5), one scale per tensor
    lsq          hq-lss with learned step sizes (LSQ) instead of absmax scales
    auto-block   hq-lss with the per-layer block search instead of block 32
    absmax       per-row absmax int4, no Hadamard, no sampling
    float-pooler hq-lss with the pooler in float too (the classifier always is)
    per-row      hq-lss with one scale per token of x H and per output channel of w H (int4-hq)
    per-row-no-lss, per-row-fwd-only   the same switches as above, with per-row scales
    lsq-auto     hq-lss with LSQ step sizes and the per-layer block search (the reference's
                 forward, with real sampling)
    per-row-auto per-row scales and the per-layer block search

The classifier stays float in every variant, as in the int4-hq recipe.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

import intcore
from intcore.drivers import finetune, methods
from intcore.int4_training import Int4Config
from intcore.nn.linear import Int4Linear


class ForwardOnlyInt4Linear(Int4Linear):
    """The HQ int4 forward with a float backward: the output is int4's, the gradients are those of
    x w^T + b at the float operands (a straight-through estimator for the quantizer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        exact = nn.functional.linear(x, self.weight, self.bias)
        with torch.no_grad():
            quantized = super().forward(x)
        return exact + (quantized - exact).detach()


def _convert(config: Int4Config, skip, cls=Int4Linear):
    def prepare(model: nn.Module, recipe: str, args) -> nn.Module:
        intcore.convert(model, intcore.recipes.Recipe("int4-ablation", linear=config), skip=skip)
        if cls is not Int4Linear:
            for module in model.modules():
                if type(module) is Int4Linear:
                    module.__class__ = cls
        return model

    return prepare


DEFAULT = Int4Config(granularity="per_tensor")  # the paper's method: one scale per tensor
PER_ROW = Int4Config(granularity="per_row")  # int4-hq's default since this ablation
VARIANTS = {
    "fwd-only": ("HQ forward, float backward", _convert(DEFAULT, "classifier", ForwardOnlyInt4Linear)),
    "no-lss": ("HQ forward, bit splitting, no sampling", _convert(replace(DEFAULT, sampling=False), "classifier")),
    "hq-lss": ("HQ forward, bit splitting, LSS 0.5, per-tensor scales", _convert(DEFAULT, "classifier")),
    "lsq": ("hq-lss with LSQ step sizes", _convert(replace(DEFAULT, scale="lsq"), "classifier")),
    "auto-block": ("hq-lss with the per-layer block search", _convert(replace(DEFAULT, block_size="auto"),
                                                                        "classifier")),
    "absmax": ("per-row absmax int4, no Hadamard, no sampling", _convert(Int4Config(recipe="absmax"), "classifier")),
    "float-pooler": ("hq-lss, pooler in float", _convert(DEFAULT, ["classifier", "*pooler*"])),
    "per-row": ("hq-lss with per-row scales (int4-hq)", _convert(PER_ROW, "classifier")),
    "per-row-no-lss": ("per-row scales, bit splitting, no sampling", _convert(replace(PER_ROW, sampling=False),
                                                                              "classifier")),
    "per-row-fwd-only": ("per-row HQ forward, float backward", _convert(PER_ROW, "classifier", ForwardOnlyInt4Linear)),
    "lsq-auto": ("hq-lss with LSQ and the block search", _convert(replace(DEFAULT, scale="lsq", block_size="auto"),
                                                                   "classifier")),
    "per-row-auto": ("per-row scales and the block search", _convert(replace(PER_ROW, block_size="auto"),
                                                                      "classifier")),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    parser.add_argument("--variants", default="fwd-only,no-lss,hq-lss")
    parser.add_argument("--output", default="runs/int4-ablation")
    parser.add_argument("--fp32", type=float, help="fp32 test accuracy of the same schedule, drawn as a line on the plot")
    args, rest = parser.parse_known_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        print("variants: " + "; ".join(f"{k}: {d}" for k, (d, _) in VARIANTS.items()), file=sys.stderr)
        return 0 if names == ["help"] else 2
    rows = []
    for name in names:
        description, prepare = VARIANTS[name]
        methods.METHODS[f"int4-{name}"] = methods.Method(f"int4-{name}", description, prepare)
        out = Path(args.output) / name
        if not (out / "results.json").exists():
            status = finetune.main(rest + ["--recipe", "fp32", "--method", f"int4-{name}", "--output", str(out)])
            if status:
                return status
        result = next(iter(json.loads((out / "results.json").read_text())["recipes"].values()))
        rows.append((name, description, result["test_accuracy"], result["test_f1"]))
    print(f"\n{'variant':<16} {'accuracy':>8} {'F1':>7}  what")
    for name, description, accuracy, f1 in rows:
        print(f"{name:<16} {accuracy:>8.4f} {f1:>7.4f}  {description}")
    plot = Path(args.output) / "ablation.png"
    _plot(rows, args.fp32, plot)
    print(f"plot: {plot}")
    return 0


def _plot(rows, fp32, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    names = [f"{name}: {description}" for name, description, _, _ in rows]
    accuracies = [accuracy for _, _, accuracy, _ in rows]
    ax.barh(names, accuracies, color=["#3b7dd8" if n.startswith("per-row") else "#999999" for n in names])
    for y, accuracy in enumerate(accuracies):
        ax.text(accuracy + 0.002, y, f"{accuracy:.4f}", va="center", fontsize=8)
    if fp32 is not None:
        ax.axvline(fp32, color="black", linestyle="--", linewidth=1, label=f"fp32 {fp32:.4f}")
        ax.legend(loc="lower right", fontsize=8)
    low = min(accuracies + ([fp32] if fp32 else []))
    ax.set_xlim(low - 0.03, max(accuracies + ([fp32] if fp32 else [])) + 0.02)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy")
    ax.set_title("INT4 training, one switch at a time", fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
