"""Int8Linear / Int4Linear: nn.Linear compatibility and training."""

import pytest
import torch
from torch import nn

import intcore


@pytest.mark.parametrize("cls", [intcore.nn.Int8Linear, intcore.nn.Int4Linear])
def test_loads_an_nn_linear_state_dict_both_ways(cls):
    linear = nn.Linear(12, 7)
    module = cls(12, 7)
    module.load_state_dict(linear.state_dict())
    assert torch.equal(module.weight, linear.weight)
    back = nn.Linear(12, 7)
    back.load_state_dict(module.state_dict())
    assert torch.equal(back.bias, linear.bias)
    shared = cls.from_linear(linear)
    assert shared.weight is linear.weight and "in_features=12" in repr(shared)


def test_int8_linear_trains_a_regression():
    torch.manual_seed(0)
    x = torch.randn(256, 32)
    target = x @ torch.randn(32, 4) + 0.1 * torch.randn(256, 4)
    model = nn.Sequential(intcore.nn.Int8Linear(32, 64), nn.GELU(), intcore.nn.Int8Linear(64, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
