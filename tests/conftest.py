"""Shared fixtures: the devices op tests run on (CUDA too when a GPU is present)."""
from __future__ import annotations

import pytest
import torch


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)
