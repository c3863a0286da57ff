"""`intcore qbert`: Q-BERT end to end on a Hugging Face classifier.

    intcore qbert --bits 2,3,4,8 --avg-bits 3 --output runs/qbert   # MiniLM, Rotten Tomatoes
    intcore qbert --config runs/qbert/configs/hessian.json           # train an edited assignment

1. fine-tunes the float model (run "fp32", as `intcore finetune --recipe fp32` would);
2. measures each encoder block's top Hessian eigenvalue over several batches and its
   sensitivity Omega = |mean| + std;
3. assigns bits per block under the budget (average bits, or --size-mb of stored block weights):
   "hessian" (the method), "uniform" and "reversed" (the paper's ablations), and "8-bit";
4. fine-tunes each quantized model quantization-aware (straight-through), starting from the
   float fine-tuned weights;
5. freezes each to packed integer codes, evaluates it with integer GEMMs, and prints a table:
   configuration, bits per block, weight MB, compression vs fp32, test accuracy and F1.

Writes to --output: results.json, curves.csv/png, configs/<name>.json (editable, for --config),
qbert-<name>.safetensors (the integer models) and qbert.png (eigenvalues and the bit map).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from intcore import hessian, qbert
from intcore.drivers import classification_data, finetune, help_text, methods, recipe_setup, session
from intcore.drivers.errors import DriverError, run_cli
from intcore.qbert.bit_assignment import validate_allowed

PANELS = finetune.PLOT_PANELS
TITLE = "intcore qbert"


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="intcore qbert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    finetune.add_training_arguments(p, "qbert")
    q = p.add_argument_group("Q-BERT")
    q.add_argument("--bits", default="2,3,4,8", help="bit widths a block may get (default 2,3,4,8)")
    q.add_argument("--avg-bits", type=float, default=3.0, help="budget: parameter-weighted average bits of the blocks")
    q.add_argument("--size-mb", type=float, help="budget instead: MB of the blocks' stored codes and scales")
    q.add_argument("--groups", type=int, default=128, help="groups of output rows per matrix, each with its own range")
    q.add_argument("--embedding-bits", type=int, default=8, help="bits of the embedding tables (8; 4 works too)")
    q.add_argument("--percentile", type=float, default=0.1,
                   help="clip weight ranges to their [p, 100-p] percentiles; 0: min/max ranges (default 0.1: "
                        "3-bit Hessian mixed 0.8430 vs 0.8117 with min/max, docs/qbert.md)")
    q.add_argument("--assignments", default="hessian,uniform,reversed",
                   help="which assignments to train besides 8-bit: hessian, uniform, reversed")
    q.add_argument("--config", help="a QBertConfig JSON to train and evaluate instead (skips the Hessian)")
    q.add_argument("--qat-lr", type=float, help="learning rate of quantization-aware fine-tuning (default --lr)")
    q.add_argument("--hessian-batches", type=int, default=4, help="batches for Omega = |mean| + std")
    q.add_argument("--hessian-batch-size", type=int, default=16)
    q.add_argument("--hessian-tol", type=float, default=1e-3, help="relative tolerance of power iteration")
    q.add_argument("--hessian-max-iter", type=int, default=100)
    help_text.show_defaults(p)
    args = p.parse_args(argv)
    finetune.check_training_args(args, "qbert")
    try:
        args.allowed_bits = validate_allowed([int(b) for b in args.bits.split(",") if b.strip()])
    except ValueError as e:
        raise DriverError(f"--bits {args.bits}: {e}") from None
    if args.size_mb is None and not min(args.allowed_bits) <= args.avg_bits:
        # Every block at the fewest bits averages exactly that: a smaller budget fits nothing.
        raise DriverError(f"--avg-bits {args.avg_bits}: the budget is below the smallest of --bits {args.bits}; "
                          f"use at least {min(args.allowed_bits)}")
    if args.size_mb is not None and not args.size_mb > 0:
        raise DriverError(f"--size-mb must be positive, got {args.size_mb}")
    if not 0 <= args.percentile < 50:
        raise DriverError(f"--percentile must be in [0, 50), got {args.percentile}")
    args.percentile = args.percentile or None  # 0: min/max ranges
    args.assignment_list = [a.strip() for a in args.assignments.split(",") if a.strip()]
    for a in args.assignment_list:
        if a not in ("hessian", "uniform", "reversed"):
            raise DriverError(f"--assignments: unknown assignment {a!r}; choose from hessian, uniform, reversed")
    if "reversed" in args.assignment_list and "hessian" not in args.assignment_list:
        raise DriverError("--assignments: 'reversed' reverses the hessian assignment; include hessian too")
    if args.hessian_batches < 1 or args.hessian_batch_size < 1 or args.hessian_max_iter < 1:
        raise DriverError("--hessian-batches, --hessian-batch-size and --hessian-max-iter must be at least 1")
    if not args.hessian_tol > 0:
        raise DriverError("--hessian-tol must be positive")
    if args.qat_lr is not None and not args.qat_lr > 0:
        raise DriverError("--qat-lr must be positive")
    if args.config and not Path(args.config).is_file():
        raise DriverError(f"--config {args.config}: no such file")
    return args


def _check_model(model_path: Path, num_labels: int) -> None:
    """Before any training: the model has nn.Linear layers Q-BERT quantizes, in a stack of
    blocks. Built from its config on the meta device: no weights read, no memory taken."""
    import transformers

    with finetune.model_directory_errors(model_path), torch.device("meta"):
        config = transformers.AutoConfig.from_pretrained(model_path, num_labels=num_labels)
        model = transformers.AutoModelForSequenceClassification.from_config(config)
    recipe_setup.check_linear_layers(model, "Q-BERT")
    try:
        qbert.find_blocks(model)
    except ValueError as e:
        raise DriverError(str(e)) from None


def _load_float(model_path: Path, weights: Path, num_labels: int, device) -> torch.nn.Module:
    from safetensors.torch import load_file

    model = finetune._load_model(model_path, num_labels, device)
    model.load_state_dict(load_file(str(weights)))
    return model


def _sensitivity(args, model, data, device) -> dict:
    """Omega per block of the fine-tuned float model."""
    batches = classification_data.training_batches(data.train_ids, args.hessian_batch_size, args.seed + 1000,
                                                   data.pad_id)[: args.hessian_batches]
    model.eval()

    def loss_of(batch):
        batch = batch.to(device)
        return lambda: model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss

    start = time.perf_counter()
    from tqdm import tqdm

    groups = qbert.block_parameters(model)
    bar = None if args.no_progress else tqdm(total=len(batches) * len(groups), desc="   Hessian", unit="block")
    result = hessian.group_sensitivities(
        groups, [loss_of(b) for b in batches], tol=args.hessian_tol, max_iter=args.hessian_max_iter, seed=args.seed,
        progress=(lambda msg: bar.update(1)) if bar else None)
    if bar:
        bar.close()
    return {"seconds": time.perf_counter() - start, "batches": len(batches), "batch_size": args.hessian_batch_size,
            "blocks": {name: {"eigenvalues": list(s.eigenvalues), "mean": s.mean, "std": s.std, "omega": s.omega}
                       for name, s in result.items()}}


def _configs(args, model, sensitivity: Optional[dict]) -> dict[str, qbert.QBertConfig]:
    common = dict(groups=args.groups, embedding_bits=args.embedding_bits, percentile=args.percentile)
    if args.config:
        return {Path(args.config).stem: qbert.QBertConfig.load(args.config)}
    blocks = qbert.block_parameters(model)
    configs = {"8-bit": qbert.QBertConfig.uniform(8, len(blocks), **common)}
    names = list(blocks)
    omegas = [sensitivity["blocks"][n]["omega"] for n in names]
    sizes = [sum(w.numel() for w in blocks[n]) for n in names]
    if args.size_mb is not None:
        from intcore.qbert.quantizer import rows_per_group, storage_bytes

        def block_bytes(ws, b):
            return sum(storage_bytes(w.shape[0], w.shape[1], b, -(-w.shape[0] // rows_per_group(w.shape[0], args.groups)))
                       for w in ws)

        costs = [{b: block_bytes(blocks[n], b) for b in args.allowed_bits} for n in names]
        budget = int(args.size_mb * 2**20)
    else:
        costs, budget = qbert.average_bits_budget(sizes, args.allowed_bits, args.avg_bits)
    errors = [{b: qbert.quantization_error(blocks[n], b, args.groups, args.percentile) for b in args.allowed_bits}
              for n in names]
    try:
        chosen = qbert.assign_bits(omegas, errors, costs, budget)
    except ValueError as e:
        raise DriverError(f"the budget is too small for --bits {args.bits}: {e}") from None
    if "hessian" in args.assignment_list:
        configs["hessian"] = qbert.QBertConfig(block_bits=chosen, **common)
    if "uniform" in args.assignment_list:
        # The largest uniform width within the budget.
        fitting = [b for b in args.allowed_bits if sum(c[b] for c in costs) <= budget]
        if fitting:
            configs[f"uniform-{max(fitting)}"] = qbert.QBertConfig.uniform(max(fitting), len(names), **common)
    if "reversed" in args.assignment_list:
        configs["reversed"] = qbert.QBertConfig(block_bits=qbert.reversed_assignment(chosen, omegas), **common)
    return configs


def _qbert_method(label: str, config: qbert.QBertConfig, float_weights: Path, float_bytes: int,
                  output) -> methods.Method:
    def prepare(model, recipe, args):
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(float_weights)))
        return qbert.quantize_model(model, config)

    def extra_results(model, evaluate, args):
        frozen = qbert.freeze(copy.deepcopy(model).eval())
        test = evaluate(frozen)
        path = qbert.save_quantized(frozen, config, output.path / f"qbert-{label}.safetensors")
        nbytes = qbert.weight_bytes(frozen)
        return {"qbert_config": config.__dict__ | {"block_bits": list(config.block_bits), "skip": list(config.skip)},
                "average_bits": config.average_bits(), "integer_test_accuracy": test["accuracy"],
                "integer_test_f1": test["f1"], "weight_bytes": nbytes, "compression": float_bytes / nbytes,
                "integer_model": str(path)}

    return methods.Method("qbert", f"Q-BERT {label}", prepare, extra_results)


def plot(path: Path, sensitivity: Optional[dict], runs: dict) -> None:
    """Left: each block's top eigenvalue (mean and std over batches); right: the bit map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    if sensitivity:
        names = list(sensitivity["blocks"])
        means = [sensitivity["blocks"][n]["mean"] for n in names]
        stds = [sensitivity["blocks"][n]["std"] for n in names]
        axes[0].bar(range(len(names)), means, yerr=stds, capsize=4, color="tab:blue")
        axes[0].set_xticks(range(len(names)), [n.rsplit(".", 1)[-1] for n in names])
        axes[0].set_xlabel("encoder block")
        axes[0].set_ylabel("top Hessian eigenvalue (mean, std)")
        axes[0].grid(alpha=0.3, axis="y")
    labels = list(runs)
    bits = [runs[k]["qbert_config"]["block_bits"] for k in labels]
    if bits:
        image = axes[1].imshow(bits, cmap="viridis", aspect="auto", vmin=2, vmax=8)
        for i, row in enumerate(bits):
            for j, b in enumerate(row):
                axes[1].text(j, i, str(b), ha="center", va="center", color="white" if b < 6 else "black")
        axes[1].set_yticks(range(len(labels)), [f"{k} ({runs[k]['integer_test_accuracy']:.3f})" for k in labels])
        axes[1].set_xticks(range(len(bits[0])))
        axes[1].set_xlabel("encoder block")
        axes[1].set_title("bits per block (integer test accuracy)")
        fig.colorbar(image, ax=axes[1], label="bits")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    with session.command_world(args) as (world, device):
        output, model_path, data, results = finetune.prepare(args, world, device, "qbert")
        num_labels = len(data.label_names)
        _check_model(model_path, num_labels)
        if world.is_main:
            print(f"intcore qbert: {model_path.name} on {args.data} ({len(data.train)} train, {len(data.test)} test); "
                  f"bits {args.bits}, budget " + (f"{args.size_mb} MB" if args.size_mb else f"{args.avg_bits} average bits")
                  + f"; output {output.path}")
        # 1. The float model.
        session.run_recipes(["fp32"], results, output, world,
                            lambda run: finetune.train_recipe(args, "fp32", model_path, data, world, device, output,
                                                              "fp32", method=methods.get("full")),
                            PANELS, TITLE)
        float_weights = output.model("fp32") / "model.safetensors"
        if not float_weights.is_file():
            raise DriverError(f"the fine-tuned float model {float_weights} is missing; rerun without --resume")
        float_model = _load_float(model_path, float_weights, num_labels, device)
        float_bytes = qbert.weight_bytes(float_model)
        # 2. Sensitivities (kept in results.json, so a resumed run does not redo them).
        if not args.config and "sensitivity" not in results:
            results["sensitivity"] = _sensitivity(args, float_model, data, device)
            if world.is_main:
                output.write_results(results)
        sensitivity = results.get("sensitivity")
        # 3. Assignments.
        configs = _configs(args, float_model, sensitivity)
        (output.path / "configs").mkdir(exist_ok=True)
        for label, config in configs.items():
            config.save(output.path / "configs" / f"{label}.json")
        # 4-5. Quantization-aware fine-tuning and integer evaluation of each.
        qat_args = copy.copy(args)
        qat_args.lr = args.qat_lr or args.lr
        runs = {f"qbert-{label}": label for label in configs}
        session.run_recipes(
            list(runs), results, output, world,
            lambda run: finetune.train_recipe(
                qat_args, "fp32", model_path, data, world, device, output,
                run, method=_qbert_method(runs[run], configs[runs[run]], float_weights, float_bytes, output)),
            PANELS, TITLE)
        if world.is_main:
            fp32 = results["recipes"]["fp32"]
            rows = [["fp32", "32 everywhere", float_bytes / 2**20, 1.0, fp32["test_accuracy"], fp32["test_f1"]]]
            done = {run: results["recipes"][run] for run in runs}
            for run, r in done.items():
                rows.append([runs[run], "/".join(map(str, r["qbert_config"]["block_bits"])), r["weight_bytes"] / 2**20,
                             r["compression"], r["integer_test_accuracy"], r["integer_test_f1"]])
            from intcore.drivers import report

            print()
            print(report.table(["config", "bits per block", "weights MB", "compression", "test acc", "F1"], rows))
            if sensitivity:
                print(f"\nHessian: {sensitivity['batches']} batches of {sensitivity['batch_size']}, "
                      f"{sensitivity['seconds']:.0f} s; Omega per block: "
                      + ", ".join(f"{v['omega']:.3g}" for v in sensitivity["blocks"].values()))
            plot(output.path / "qbert.png", sensitivity, {runs[k]: v for k, v in done.items()})
            print(f"\nresults: {output.results}\nplot:    {output.path / 'qbert.png'}\nconfigs: {output.path / 'configs'}")
    return 0


def cli(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli("qbert", main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())
