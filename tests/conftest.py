"""Suite-wide test settings."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The test networks are tiny: thread-pool hand-offs cost more than the maths, badly so on a
    shared 2-core machine, so every test runs torch on one thread (and restores the setting)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
