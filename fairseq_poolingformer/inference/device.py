"""Where a model runs: CUDA when there is one (unless ``cpu``), half precision on request."""
from __future__ import annotations

import logging
from typing import Any, Tuple

import torch

logger = logging.getLogger(__name__)


def place(module: torch.nn.Module, cpu: bool = False, fp16: bool = False) -> Tuple[Any, bool]:
    """``(module, use_cuda)``: the module on CUDA when available and not ``cpu``, in fp16 when
    asked there (fp16 without CUDA runs in fp32, with a warning)."""
    use_cuda = torch.cuda.is_available() and not cpu
    if use_cuda:
        module = module.cuda()
        if fp16:
            module = module.half()
    elif fp16:
        logger.warning("--fp16 needs CUDA; running in fp32 on the CPU")
    return module, use_cuda
