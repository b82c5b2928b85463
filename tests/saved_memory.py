"""What autograd keeps for backward: shared by the memory tests."""

import torch


def saved_storages(fn):
    """fn()'s result and {data_ptr: nbytes} of the distinct storages autograd keeps for its
    backward (what is recomputed in backward is not kept)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, storages


def saved_bytes(fn):
    """fn()'s result and the bytes of the distinct storages autograd keeps for its backward."""
    out, storages = saved_storages(fn)
    return out, sum(storages.values())
