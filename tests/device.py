"""Where the attention tests run the fast kernels: CPU fp32 by default, or a device and dtype
chosen by environment variables (``make gpu-check`` runs them on CUDA in fp32, fp16, bf16):

    PF_TEST_DEVICE=cuda PF_TEST_DTYPE=float16 python -m pytest -m device tests/test_attention.py tests/test_flex.py

(tests/test_flex.py: the FlexAttention path; on CUDA compiled and with gradients, on the CPU
forward only.)

Tests marked ``device`` build their inputs on the CPU in fp32, round them to ``DTYPE``
(``rounded``), run the fast code on ``DEVICE`` in ``DTYPE`` (``to_device``) and compare with
the dense reference, computed on the CPU in fp32 from the same rounded inputs, within
``atol()``: the only error measured is the kernel's own arithmetic.
"""

import os

import torch

DEVICE = torch.device(os.environ.get("PF_TEST_DEVICE", "cpu"))
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_DTYPE_NAME = os.environ.get("PF_TEST_DTYPE", "float32")
if _DTYPE_NAME not in _DTYPES:
    raise ValueError(f"PF_TEST_DTYPE must be one of {sorted(_DTYPES)}, got {_DTYPE_NAME!r}")
DTYPE = _DTYPES[_DTYPE_NAME]

if DEVICE.type == "cuda" and not torch.cuda.is_available():
    raise RuntimeError("PF_TEST_DEVICE=cuda but torch.cuda.is_available() is False")
# Absolute tolerance on O(1) values (outputs are convex combinations of unit-variance values).
# CPU fp32 is bit-close; CUDA fp32 may reorder sums; half precision rounds every product
# (fp16: 10-bit mantissa, bf16: 7-bit) while the reference keeps fp32 throughout.
_ATOL = {torch.float32: 1e-5 if DEVICE.type == "cpu" else 1e-4, torch.float16: 1e-2, torch.bfloat16: 6e-2}


def atol(base: float = 1e-5) -> float:
    """Tolerance for this device and dtype (``base`` on CPU fp32, scaled alike elsewhere)."""
    return _ATOL[DTYPE] * base / 1e-5


def rounded(t: torch.Tensor) -> torch.Tensor:
    """t rounded to DTYPE, back in fp32 on the CPU: the reference's input (keeps requires_grad)."""
    out = t.detach().to(DTYPE).float()
    return out.requires_grad_(t.requires_grad)


def to_device(t):
    """t (or None) on DEVICE in DTYPE (floating tensors only), a new leaf keeping requires_grad."""
    if t is None:
        return None
    if not t.is_floating_point():
        return t.to(DEVICE)
    return t.detach().to(DEVICE, DTYPE).requires_grad_(t.requires_grad)


def to_host(t: torch.Tensor) -> torch.Tensor:
    """Back to CPU fp32 for the comparison."""
    return t.detach().float().cpu()
