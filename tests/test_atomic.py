"""inas_plugins.atomic, the one atomic writer (the JSON/text paths are also covered in test_results.py)."""

from __future__ import annotations

import os

import pytest
import torch

from inas_plugins import atomic, results


def test_atomic_open_streams_into_place_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "tensors.pt"
    with atomic.atomic_open(target) as handle:
        torch.save({"x": torch.arange(5)}, handle)
        assert not target.exists()  # nothing visible until the block ends
    assert torch.equal(torch.load(target, weights_only=True)["x"], torch.arange(5))
    assert os.listdir(tmp_path) == ["tensors.pt"]


def test_an_exception_inside_the_block_keeps_the_old_file_and_removes_the_temp_file(tmp_path):
    target = tmp_path / "data.bin"
    atomic.atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="serialiser broke"):
        with atomic.atomic_open(target) as handle:
            handle.write(b"half of the new")
            raise RuntimeError("serialiser broke")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_results_re_exports_the_same_writers():
    assert results.atomic_write_json is atomic.atomic_write_json
    assert results.atomic_write_text is atomic.atomic_write_text
    assert results.atomic_write_bytes is atomic.atomic_write_bytes
