"""How good are the INT4 training layer's outputs and gradients? SNR of Y, dX and dW against fp32,
per layer of MiniLM-L6, on real activations and gradients of our default task.

    python benchmarks/int4_gradient_snr.py [--batches 3] [--batch-size 32] [--draws 4]

For a few training batches of Rotten Tomatoes, the pretrained all-MiniLM-L6-v2 (with the
classification head) runs forward and backward in fp32; hooks keep every encoder linear layer's
input X, weight W and output gradient G. Each estimator then recomputes that layer's forward
and backward through `intcore.int4_linear` on the same X and W, with G as the output gradient,
and is compared with the exact X W^T, G W and G^T X:

    SNR = 10 log10(||exact||^2 / ||estimate - exact||^2)   (dB; higher is better)

Estimators: `absmax` (per-row absmax int4 codes, int4 GEMMs, no transform), `hq, bit split`
(Hadamard quantizer, G split into two int4 digits, every row kept), and `hq-lss` (the same with
leverage-score sampling of half the rows: the default recipe), and `hq-lss, per row` (the same
with one scale per token of X H and per output channel of W H, and G split per token for dX and
per output channel for dW). Random draws differ by seed;
the table gives the mean over --draws draws and batches, per layer kind and depth, and for the
gradients the SNR of the mean of the draws (the bias check: an unbiased estimator's mean approaches the exact
gradient, so its SNR grows with more draws).
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict

ESTIMATORS = {
    "absmax": dict(recipe="absmax"),
    "hq, bit split": dict(recipe="hq-lss", sampling=False),
    "hq-lss": dict(recipe="hq-lss", sampling=True),
    "hq-lss, per row": dict(recipe="hq-lss", sampling=True, granularity="per_row"),
}


def snr_db(estimate, exact) -> float:
    noise = (estimate.double() - exact.double()).pow(2).sum().item()
    signal = exact.double().pow(2).sum().item()
    return float("inf") if noise == 0 else 10 * math.log10(signal / noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--draws", type=int, default=4, help="random draws (seeds) per estimator and batch")
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args()

    import torch
    import transformers

    import intcore
    from intcore import assets
    from intcore.drivers import classification_data

    torch.manual_seed(0)
    path = assets.model_dir()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).train()
    splits = classification_data.load("rotten_tomatoes", seed=0)
    data = classification_data.tokenize(tokenizer, splits.train, args.max_length)
    batches = classification_data.training_batches(data, args.batch_size, 0, tokenizer.pad_token_id)[: args.batches]

    captured = {}
    hooks = []
    for name, module in model.bert.encoder.named_modules():
        if isinstance(module, torch.nn.Linear):
            def keep(mod, inputs, output, name=name):
                captured[name] = {"x": inputs[0].detach().reshape(-1, mod.in_features), "w": mod.weight.detach()}
                output.register_hook(lambda g, name=name: captured[name].__setitem__("g", g.detach().reshape(-1, g.shape[-1])))
            hooks.append(module.register_forward_hook(keep))

    per_layer = defaultdict(lambda: defaultdict(list))  # name -> (estimator, grad) -> [snr]
    of_mean = defaultdict(lambda: defaultdict(list))
    for batch in batches:
        captured.clear()
        model.zero_grad(set_to_none=True)
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss.backward()
        for name, t in captured.items():
            x, w, g = t["x"], t["w"], t["g"]
            exact = {"Y": x @ w.T, "dX": g @ w, "dW": g.T @ x}
            for estimator, options in ESTIMATORS.items():
                sums = {"dX": torch.zeros_like(exact["dX"]), "dW": torch.zeros_like(exact["dW"])}
                for draw in range(args.draws):
                    torch.manual_seed(1000 * draw + 1)
                    xl, wl = x.clone().requires_grad_(), w.clone().requires_grad_()
                    y = intcore.int4_linear(xl, wl, **options)
                    if draw == 0:
                        per_layer[name][(estimator, "Y")].append(snr_db(y.detach(), exact["Y"]))
                        of_mean[name][(estimator, "Y")].append(per_layer[name][(estimator, "Y")][-1])
                    y.backward(g)
                    for grad, value in (("dX", xl.grad), ("dW", wl.grad)):
                        per_layer[name][(estimator, grad)].append(snr_db(value, exact[grad]))
                        sums[grad] += value
                for grad in ("dX", "dW"):
                    of_mean[name][(estimator, grad)].append(snr_db(sums[grad] / args.draws, exact[grad]))
    for h in hooks:
        h.remove()

    kinds = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
             "attention.output.dense": "attn out", "intermediate.dense": "ffn up", "output.dense": "ffn down"}
    print(f"MiniLM-L6, {args.batches} batches of {args.batch_size} from Rotten Tomatoes, {args.draws} draws each; "
          f"SNR in dB against fp32 (mean over draws; in brackets: SNR of the mean of {args.draws} draws)")
    columns = [(e, g) for e in ESTIMATORS for g in ("Y", "dX", "dW")]
    header = f"{'layer':<20}" + "".join(f"{e + ' ' + g:>21}" for e, g in columns)
    print(header + "\n" + "-" * len(header))
    for name in captured_order(per_layer):
        layer = name.split(".")[1]
        kind = next(k for suffix, k in kinds.items() if name.endswith(suffix))
        cells = "".join(f"{sum(per_layer[name][c]) / len(per_layer[name][c]):13.1f} ({sum(of_mean[name][c]) / len(of_mean[name][c]):5.1f})"
                        for c in columns)
        print(f"{'L' + layer + ' ' + kind:<20}" + cells)
    for estimator in ESTIMATORS:
        for grad in ("Y", "dX", "dW"):
            values = [v for name in per_layer for v in per_layer[name][(estimator, grad)]]
            print(f"mean {estimator} {grad}: {sum(values) / len(values):.1f} dB")


def captured_order(per_layer) -> list:
    return sorted(per_layer, key=lambda n: (int(n.split(".")[1]), n))


if __name__ == "__main__":
    main()
