"""The `intcore` command: help and version without torch, every command reachable, every
option's default in its --help."""

import importlib
import subprocess
import sys

import pytest

import intcore
import intcore_cli


def test_help_and_version_answer_without_importing_torch():
    probe = ("import sys, intcore_cli\n"
             "codes = [intcore_cli.main(['--help']), intcore_cli.main(['--version'])]\n"
             "print(codes, 'torch' in sys.modules, 'intcore' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[-1] == "[0, 0] False False"
    assert f"intcore {intcore.__version__}" in out
    for name in intcore_cli.COMMANDS:
        assert any(line.startswith(f"  {name} ") for line in out), name


def test_every_command_resolves_and_unknown_ones_are_refused(capsys):
    for target, _ in intcore_cli.COMMANDS.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target
    assert intcore_cli.main(["fine-tune"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("intcore: error: unknown command 'fine-tune'") and len(err.splitlines()) == 1
    assert intcore_cli.main([]) == 2 and "usage: intcore" in capsys.readouterr().err


@pytest.mark.parametrize("command, expected", [
    ("finetune", {"--batch-size": "32", "--lr": "0.0001", "--seed": "0", "--keep-checkpoints": "0", "--text-column": "text"}),
    ("train-lm", {"--steps": "500", "--lr": "0.002", "--tokens": "char", "--keep-checkpoints": "1"}),
    ("qbert", {"--groups": "128", "--hessian-batches": "4", "--batch-size": "32"}),
    ("evaluate", {"--text-column": "text", "--label-column": "label", "--device": "cpu"}),
    ("predict", {"--batch-size": "64", "--text-column": "text"}),
])
def test_command_help_shows_defaults(command, expected, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapped help texts
    with pytest.raises(SystemExit) as done:
        intcore_cli.main([command, "--help"])
    assert done.value.code == 0
    entries, option = {}, None  # option -> its help text (on its line, or on the next after a long one)
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("  -"):
            option = line.split()[0].rstrip(",")
            entries[option] = line
        elif option and line.startswith("   "):
            entries[option] += line
    for option, default in expected.items():
        assert f"(default: {default})" in entries[option], (command, entries[option])
