"""Files the library writes for a user (adapters, quantized models, driver outputs): complete
under their final name or not there, read back before they replace an older file, and given
the modes an ordinary open() would give."""

import os
import stat

import pytest
import torch

from intcore import atomic_files, peft


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_safetensors_written_with_an_ordinary_mode_and_no_leftovers(tmp_path):
    path = tmp_path / "a.safetensors"
    atomic_files.save_safetensors("save_x", path, {"w": torch.arange(6.0).reshape(2, 3)}, {"k": "v"})
    assert mode(path) == 0o666 & ~atomic_files._UMASK
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


def test_a_file_that_does_not_read_back_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "a.safetensors"
    atomic_files.save_safetensors("save_x", path, {"w": torch.zeros(3)}, {})
    old = path.read_bytes()
    monkeypatch.setattr(atomic_files, "load_file", lambda p: {"w": torch.ones(3)})
    with pytest.raises(OSError, match=r"^save_x: .*a.safetensors did not read back identically"):
        atomic_files.save_safetensors("save_x", path, {"w": torch.zeros(3) + 2}, {})
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


def test_saved_adapters_are_readable_by_others(tmp_path):
    model = torch.nn.Sequential()
    model.add_module("lora_a", torch.nn.Linear(2, 2))
    path = peft.save_adapters(model, tmp_path / "adapters.safetensors", "lora_", {"r": 2})
    assert mode(path) == 0o666 & ~atomic_files._UMASK
    assert peft.adapters.read_adapter_config(path) == {"r": 2}
