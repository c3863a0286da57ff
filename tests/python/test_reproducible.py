"""--reproducible: the same command gives the same bits whatever instruction sets the CPU offers.
Different CPUs are stood in for by capping what this one may use (MKL's instructions, intcore's
CPU kernel set): with --reproducible the trained weights must be bit-identical."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from intcore.drivers import finetune  # noqa: E402
from intcore_cli import reproducible  # noqa: E402
from test_drivers import finetune_args, sentiment_csv, tiny_bert  # noqa: E402,F401  (fixtures)

INTCORE = shutil.which("intcore")


def _train(model, data, out: Path, caps: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k not in reproducible.ENVIRONMENT}
    env.update(caps, OMP_NUM_THREADS="2")
    args = finetune_args(model, data, out, "--recipes", "fp32,int8", "--epochs", "1", "--reproducible")
    done = subprocess.run([INTCORE, "finetune", *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    digest = hashlib.sha256()
    for run in ("fp32", "int8"):
        digest.update((out / "models" / run / "model.safetensors").read_bytes())
    return digest.hexdigest()


@pytest.mark.skipif(INTCORE is None, reason="the intcore command is not installed")
def test_same_weights_under_different_instruction_set_caps(tiny_bert, sentiment_csv, tmp_path):  # noqa: F811
    import intcore

    kernels = intcore._C.supported_cpu_kernels()
    plain = _train(tiny_bert, sentiment_csv, tmp_path / "a", {})
    capped = _train(tiny_bert, sentiment_csv, tmp_path / "b",
                    {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "INTCORE_CPU_KERNEL": kernels[0]})
    assert plain == capped


def test_reproducible_after_torch_loaded_says_what_to_export(tiny_bert, sentiment_csv, tmp_path, capsys):  # noqa: F811
    if reproducible.active():
        pytest.skip("this process already runs with the settings")
    code = finetune.cli(finetune_args(tiny_bert, sentiment_csv, tmp_path / "o", "--reproducible"))
    err = capsys.readouterr().err
    assert code == 2 and "--reproducible must be set before torch loads" in err and "MKL_CBWR=COMPATIBLE" in err
