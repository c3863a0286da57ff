"""intcore.memory: bytes a training step holds, on toy models whose saved tensors are known."""

import json

import pytest
import torch
from torch import nn

import intcore
from intcore.memory import SavedTensors, measure_step

F32 = 4


def test_a_two_layer_mlp_holds_exactly_what_autograd_saves():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    x = torch.randn(8, 16)
    optimizer = torch.optim.AdamW(model.parameters())
    step = measure_step(model, lambda: model(x).pow(2).mean(), optimizer)
    # Saved: x for the first weight's gradient, the ReLU output (its own backward and the second
    # weight's gradient), the second weight (for the gradient into the ReLU output; a parameter),
    # and pow's input. The first weight is not saved: x needs no gradient.
    assert step.activations == step.peak_activations == (8 * 16 + 8 * 32 + 8 * 4) * F32
    assert step.parameters == 32 * 4 * F32
    n_params = 16 * 32 + 32 + 32 * 4 + 4
    assert step.gradients == n_params * F32
    assert step.optimizer_state == 2 * n_params * F32 + 4 * F32  # exp_avg, exp_avg_sq, a step counter each
    assert "activations 0.0 MB" in step.describe()


def test_a_storage_counts_once_however_often_and_through_whatever_view_it_is_saved():
    x = torch.randn(64, 64, requires_grad=True)
    with SavedTensors() as saved:
        y = (x * x).sum() + (x[:32] * 2).exp().sum() + x.t().sin().sum()
    # x (saved by mul twice, and by sin through a transposed view) and exp's output
    assert saved.activation_bytes == 64 * 64 * F32 + 32 * 64 * F32
    y.backward()
    assert saved.activation_bytes == 0  # everything released by the backward


def test_peak_counts_what_a_backward_recomputes():
    class Recompute(torch.autograd.Function):
        """relu(x @ w) keeping only x; the backward recomputes the product."""

        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return (x @ w).relu()

        @staticmethod
        def backward(ctx, grad):
            x, w = ctx.saved_tensors
            with torch.enable_grad():
                x = x.detach().requires_grad_()
                y = (x @ w).relu()  # saves x (already held), w (a parameter) and its output
                return torch.autograd.grad(y, (x, w), grad)

    model = nn.Module()
    model.w = nn.Parameter(torch.randn(16, 24))
    x = torch.randn(10, 16)
    step = measure_step(model, lambda: Recompute.apply(x, model.w).sum())
    assert step.activations == 10 * 16 * F32
    assert step.peak_activations == 10 * 16 * F32 + 10 * 24 * F32
    assert step.parameters == 16 * 24 * F32


def test_measure_step_refuses_a_loss_that_is_not_one_number():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="measure_step: loss_fn must return a one-element tensor, got \\(3, 2\\)"):
        measure_step(model, lambda: model(torch.randn(3, 2)))


def test_finetune_memory_report(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    from intcore.drivers import finetune

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "film"]
    model_dir = tmp_path / "model"
    transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(model_dir)
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2,
                                                   num_attention_heads=2, intermediate_size=64,
                                                   max_position_embeddings=32)).save_pretrained(model_dir)
    (tmp_path / "data.csv").write_text("text,label\n" + "".join(f"film {'good' if i % 2 else 'bad'},{i % 2}\n"
                                                                for i in range(40)))
    held = {}
    for method in ("full", "meft1"):
        out = tmp_path / method
        assert finetune.cli(["--model", str(model_dir), "--data", str(tmp_path / "data.csv"), "--method", method,
                             "--recipes", "fp32,int8", "--memory-report", "--max-length", "24", "--batch-size", "8",
                             "--output", str(out)]) == 0
        memory = json.loads((out / "results.json").read_text())["memory"]
        assert all(m["batch"] == [8, 24] for m in memory.values())
        held[method] = memory
    assert "peak act." in capsys.readouterr().out
    assert held["meft1"]["meft1-fp32"]["activations"] < held["full"]["fp32"]["activations"] / 4
    assert held["meft1"]["meft1-int8"]["activations"] < held["full"]["int8"]["activations"] / 4
    assert not (tmp_path / "full" / "checkpoints").exists()  # nothing trained


def test_intcore_exports_the_module():
    assert intcore.memory.measure_step is measure_step
