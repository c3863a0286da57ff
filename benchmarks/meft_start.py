"""MEFT at the start of fine-tuning, on the default model (all-MiniLM-L6-v2) and data (Rotten
Tomatoes), in one run:

1. how far each variant's output is from the pretrained model's (relative Frobenius distance of
   the encoder output and of the pooled output, adapters at their N(0, 0.02^2) init and at
   zero), for both readouts;
2. how well the reversible backward rebuilds each layer's input from the top output (the
   backward's own code, dropout and rounding seeds replayed): float streams (paper's lambda,
   beta) and int64 fixed-point streams (powers of two), as relative RMS and relative
   worst-element errors.

    python benchmarks/meft_start.py [--batch 32] [--max-length 64] [--recipe fp32|int16|int8]

The pretrained model and data come from intcore's pinned archives (downloaded once).
"""

from __future__ import annotations

import argparse
import copy

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--recipe", default="fp32", help="the backbone's recipe for the rebuild table (integer streams)")
    args = p.parse_args()

    import transformers

    import intcore
    from intcore import assets
    from intcore.drivers import classification_data
    from intcore.peft import MeftConfig, audit_reconstruction, wrap_meft
    from intcore.peft.meft import meft_encoder

    transformers.logging.set_verbosity_error()
    path = assets.model_dir()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    data = classification_data.load("rotten_tomatoes", 0)
    texts = [text for text, _ in data.test[:args.batch]]
    inputs = tokenizer(texts, padding="max_length", truncation=True, max_length=args.max_length, return_tensors="pt")
    torch.manual_seed(0)
    base = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    with torch.no_grad():
        reference = base.bert(**inputs)

    def distance(a, b) -> float:
        return ((a - b).norm() / b.norm()).item()

    print(f"{path.name}, {args.batch} test sentences padded to {args.max_length} tokens\n")
    print("distance from the pretrained model at the start (||out - pretrained|| / ||pretrained||)")
    print(f"{'variant':8s} {'readout':7s}  {'encoder':>8s} {'pooled':>8s}  {'encoder, adapters 0':>20s}")
    for variant in ("adapter", "meft1", "meft2", "meft3"):
        for readout in (("last",) if variant == "adapter" else ("last", "mean")):
            row = []
            for zero in (False, True):
                torch.manual_seed(1)
                model = wrap_meft(copy.deepcopy(base), MeftConfig(variant=variant, readout=readout)).eval()
                if zero:
                    with torch.no_grad():
                        for name, param in model.named_parameters():
                            if "adapter_" in name:
                                param.zero_()
                with torch.no_grad():
                    out = model.bert(**inputs)
                row.append((distance(out.last_hidden_state, reference.last_hidden_state),
                            distance(out.pooler_output, reference.pooler_output)))
            print(f"{variant:8s} {readout:7s}  {row[0][0]:8.3f} {row[0][1]:8.3f}  {row[1][0]:20.3f}")

    print(f"\nrebuild error per reversible layer, bottom first: ||rebuilt - x|| / ||x|| (in brackets "
          f"max |rebuilt - x| / max |x|); training mode; backbone {args.recipe} for integer streams")
    for variant in ("meft1", "meft2", "meft3"):
        for integer in (False, True):
            torch.manual_seed(1)
            model = wrap_meft(copy.deepcopy(base), MeftConfig(variant=variant, integer=integer))
            if integer and args.recipe != "fp32":
                intcore.convert(model, args.recipe, skip="classifier")
            model.train()
            with torch.no_grad(), audit_reconstruction(model) as audit:
                model(**inputs)
            cells = ["exact" if layer["exact"] else f"{layer['rms_rel_error']:.1e} ({layer['max_rel_error']:.1e})"
                     for layer in audit.layers]
            config = meft_encoder(model).meft_config
            streams = "int64 streams" if integer else "float streams"
            print(f"{variant} {streams:13s} (lambda {config.lam:g}, beta {config.beta:g}): {' '.join(cells)}")


if __name__ == "__main__":
    main()
