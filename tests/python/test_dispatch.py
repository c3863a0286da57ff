"""Dispatch between native and portable kernels: the kernel table, forcing portable kernels
(context manager and INTCORE_BACKEND), opcheck on the portable kernels, a short BERT training
run that must be bit-identical either way, and `python -m intcore`."""

import copy
import os
import subprocess
import sys

import pytest
import torch

import intcore
from intcore import self_check
from intcore.backends import portable

transformers = pytest.importorskip("transformers")

ops = torch.ops.intcore


def test_kernel_table_native_on_cpu_portable_elsewhere():
    table = intcore.kernel_table()
    assert set(table["cpu"]) == set(portable.KERNELS)
    assert all(how == "native" for how in table["cpu"].values())
    assert all(how == "portable" for how in table["other"].values())
    with intcore.portable_kernels():
        assert all(how == "portable" for how in intcore.kernel_table()["cpu"].values())
    assert intcore.kernel_table()["cpu"]["int8_mm"] == "native"


def test_every_op_has_a_portable_kernel():
    defined = {name.split("::")[1] for name in torch._C._dispatch_get_all_op_names() if name.startswith("intcore::")}
    assert defined == set(portable.KERNELS)


def test_forcing_portable_runs_the_portable_kernel(monkeypatch):
    calls = []
    original = portable.KERNELS["int8_mm"]
    monkeypatch.setitem(portable.KERNELS, "int8_mm", lambda *a: calls.append(1) or original(*a))
    a = torch.randint(-128, 128, (4, 8), dtype=torch.int8)
    ops.int8_mm(a, a)
    assert calls == []
    with intcore.portable_kernels():
        ops.int8_mm(a, a)
    assert calls == [1]
    ops.int8_mm(a, a)
    assert calls == [1]


def _run(code: str, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_environment_variable_forces_portable_and_rejects_typos():
    code = "import intcore; print(set(intcore.kernel_table()['cpu'].values()))"
    assert _run(code, INTCORE_BACKEND="portable").stdout.strip() == "{'portable'}"
    assert _run(code, INTCORE_BACKEND="native").stdout.strip() == "{'native'}"
    bad = _run(code, INTCORE_BACKEND="portabel")
    assert bad.returncode != 0 and "INTCORE_BACKEND must be 'native' or 'portable'" in bad.stderr


CASES = self_check.cases("cpu")


@pytest.mark.parametrize("case", CASES, ids=[f"{c.op}-{c.label}" for c in CASES])
def test_native_matches_portable_and_opcheck(case):
    with intcore.portable_kernels():
        expected = case.run()
        torch.library.opcheck(getattr(ops, case.op), case.args)
    assert self_check.same_bits(case.run(), expected)


def test_self_check_compares_each_device_with_the_cpu_engine(monkeypatch):
    # Off the CPU every case is compared with the CPU engine's result on the same inputs; here the
    # CPU stands in for the other device, so every case must be "ok" (none merely "portable").
    results = self_check.check_device("cpu", against_cpu=True)
    assert results and {r.status for r in results} == {"ok"}
    # A device whose results differ from the CPU's is caught, naming the comparison.
    real_cases = self_check.cases

    def shifted(device):
        out = real_cases(device)
        if device == "cpu" and getattr(shifted, "calls", 0) == 1:
            out[0].args = (out[0].args[0] + 1, *out[0].args[1:])
        shifted.calls = getattr(shifted, "calls", 0) + 1
        return out

    monkeypatch.setattr(self_check, "cases", shifted)
    first = self_check.check_device("cpu", against_cpu=True)[0]
    assert first.status == "MISMATCH" and "CPU engine" in first.detail


@pytest.fixture(scope="module")
def tiny_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=200, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=32, num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


def _train(model, steps=5):
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        ids = torch.randint(1, 200, (8, 16), generator=g)
        labels = torch.randint(0, 2, (8,), generator=g)
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses), [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("recipe", ["int16", "int8", "int8-mixed", "int4-hq"])
def test_bert_training_is_bit_identical_native_and_portable(tiny_bert, recipe):
    native_losses, native_params = _train(intcore.convert(copy.deepcopy(tiny_bert), recipe, skip="classifier"))
    with intcore.portable_kernels():
        losses, params = _train(intcore.convert(copy.deepcopy(tiny_bert), recipe, skip="classifier"))
    assert self_check.same_bits(losses, native_losses)
    assert self_check.same_bits(params, native_params)


def test_doctor_reports_and_passes():
    done = subprocess.run([sys.executable, "-m", "intcore"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every kernel agrees bit for bit" in done.stdout
    assert "kernels on cpu:" in done.stdout
