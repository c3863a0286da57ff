"""What a fuzz and a new user's run found after the hardening of tests/python/test_hardening.py:
arguments of the wrong type that raised Python's own comparison or iteration errors, and a
--device that PyTorch cannot use, reported after the data had loaded. One test each."""

import pytest
import torch

import intcore
from intcore.drivers import distributed, evaluate, finetune, predict, train_lm
from intcore.drivers.errors import DriverError


@pytest.mark.parametrize("budget", [None, "0.5", True, 0, 1.5, float("nan")])
def test_int4_budget_of_the_wrong_kind_is_named(budget):
    with pytest.raises(ValueError, match=r"Int4Config.budget must be a number in \(0, 1\], got"):
        intcore.Int4Config(budget=budget)
    x, w = torch.randn(4, 32), torch.randn(8, 32)
    with pytest.raises(ValueError, match=r"^int4_linear: budget must be a number in \(0, 1\], got"):
        intcore.int4_linear(x, w, budget=budget)


@pytest.mark.parametrize("skip", [3, 2.5, object()])
def test_convert_skip_of_the_wrong_kind_is_named(skip):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(TypeError, match="convert: skip must be a module name pattern, a list of them or a callable"):
        intcore.convert(model, "int8", skip=skip)


def test_convert_skip_still_takes_any_iterable_of_names():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    intcore.convert(model, "int8", skip=(name for name in ["1"]))
    assert isinstance(model[1], torch.nn.Linear) and not type(model[0]) is torch.nn.Linear


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where PyTorch cannot use CUDA")
def test_cuda_device_without_cuda_is_one_line_before_any_work():
    with pytest.raises(DriverError, match=r"^--device cuda: (this PyTorch is a CPU build|PyTorch sees no CUDA)"):
        distributed.parse_device("cuda")
    with pytest.raises(DriverError, match="--device gpu0"):
        distributed.parse_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where PyTorch cannot use CUDA")
@pytest.mark.parametrize("driver, args", [
    (finetune, ["--device", "cuda", "--data", "/nonexistent.csv"]),
    (train_lm, ["--device", "cuda"]),
    (evaluate, ["/nonexistent-run", "--data", "/nonexistent.csv", "--device", "cuda"]),
    (predict, ["/nonexistent-run", "--device", "cuda", "--text", "hi"]),
])
def test_drivers_refuse_an_unusable_device_first(driver, args, capsys):
    # The data path does not exist either: the device error must come first, in one line.
    assert driver.cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert "--device cuda:" in err and err.count("\n") == 0, err


def test_summary_columns_share_their_decimals():
    from intcore.drivers import report

    text = report.table(["run", "test acc", "step s", "peak MB"],
                        [["int16", 0.84531, 12.6, 1858.4], ["fp32", 0.8414, 7.22361, 123.0]])
    lines = text.splitlines()
    assert lines[2].split() == ["int16", "0.8453", "12.600", "1858.4"]
    assert lines[3].split() == ["fp32", "0.8414", "7.224", "123.0"]


def test_help_lists_the_classifiers_finetune_takes():
    import intcore_cli

    line = next(line for line in intcore_cli.usage().splitlines() if line.strip().startswith("finetune"))
    assert "BERT classifier" not in line and all(m in line for m in ("BERT", "RoBERTa", "GPT-2"))
