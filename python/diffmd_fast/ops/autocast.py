"""Mixed precision for the EGL op: under ``torch.autocast`` it computes in float32 and returns the
autocast dtype, as PyTorch's own lower-precision ops do.

Why float32 inside: the op's softmax over neighbours and the Bessel/Legendre basis lose too much in
bfloat16/float16 (and the compiled kernels only exist for float32/float64), while callers under
autocast hand it bf16 features from their Linear layers next to float32 positions. float64
inputs stay float64 (autocast never narrows float64).
"""
from __future__ import annotations

import functools

import torch


def _compute_dtype(args) -> torch.dtype:
    floats = [a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
    return torch.float64 if torch.float64 in floats else torch.float32


def _cast(args, dtype: torch.dtype) -> list:
    return [a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]


def _outputs(out, compute: torch.dtype, device_type: str):
    low = compute if compute == torch.float64 else torch.get_autocast_dtype(device_type)
    return tuple(o.to(low) if o.is_floating_point() else o for o in out)


def float32_under_autocast(fn):
    """Decorator for a plain-PyTorch op ``fn(x, ...)`` returning a tuple of tensors (the reference)."""

    @functools.wraps(fn)
    def wrapper(x, *args, **kwargs):
        device_type = x.device.type
        if not torch.is_autocast_enabled(device_type):
            return fn(x, *args, **kwargs)
        compute = _compute_dtype((x, *args))
        with torch.autocast(device_type, enabled=False):
            out = fn(*_cast((x, *args), compute), **kwargs)
        return _outputs(out, compute, device_type)

    return wrapper


def register_float32_autocast(qualname: str, lib: torch.library.Library) -> None:
    """The same rule as an Autocast kernel of the compiled op ``qualname`` on CPU and CUDA, so it
    also holds for direct ``torch.ops`` calls and under torch.compile."""
    op = getattr(getattr(torch.ops, qualname.split("::")[0]), qualname.split("::")[1]).default
    for device_type in ("cpu", "cuda"):
        key = "Autocast" + torch._C._dispatch_key_for_device(device_type)
        keyset = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, key))

        def kernel(_keyset, *args, _device_type=device_type, _keys=keyset):
            compute = _compute_dtype(args)
            with torch._C._ExcludeDispatchKeyGuard(_keys):
                out = op(*_cast(args, compute))
            return _outputs(out, compute, _device_type)

        lib.impl(qualname.split("::")[1], kernel, key, with_keyset=True)
