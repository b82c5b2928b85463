"""What the layers of one encoder forward would each compute the same way.

The band masks (and the band layout, the global positions) depend only on T, the padding, the
global tokens and the window settings, never on the layer. The encoder makes one
``ForwardCache`` per forward and hands it to every layer; the first layer builds each item and
the others reuse it, so a 6-layer encoder builds its level-1 mask once and backward keeps one
copy of it instead of six. Called without a cache, the attention builds its own (as the
encoder makes it under --checkpoint-activations, so that no mask outlives its layer's backward).
"""

from typing import Callable, Dict, Hashable, Optional, TypeVar

Item = TypeVar("Item")


class ForwardCache:
    """Items keyed by their settings (window, block, T, batch, dtype, device).

    Valid for one set of inputs only: every layer of one forward sees the same tokens, padding
    and global tokens, which the keys therefore leave out. Make a new one per forward."""

    def __init__(self) -> None:
        self._items: Dict[Hashable, object] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, build: Callable[[], Item]) -> Item:
        if key not in self._items:
            self._items[key] = build()
        return self._items[key]  # type: ignore[return-value]


def cached(cache: Optional[ForwardCache], key: Hashable, build: Callable[[], Item]) -> Item:
    """build(), once per cache and key (every call when cache is None)."""
    return build() if cache is None else cache.get(key, build)
