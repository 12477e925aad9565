"""The second look's decodes, shared by its passes: a file in several of them (near misses,
box pairs, aligned pairs, the comparison with a cluster's leader) and in several pairs is
decoded once per scale, and its framing and thumbnails made once, while it stays in a cache bounded in
bytes (least recently used out first): at 1M images a command may re-decode 100k files.
Every view is made from the same decoded pixels as before, so every score is the same."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np

from . import hashing, textbox

# 256 MiB: ~5,000 files at both scales (a 64 px decode of a catalogue photo ~16 KB, a 128 px one
# ~64 KB, a framing twice its 64 px decode): the 3,287 re-decoded pairs of the benchmark's mixed set fit.
MAX_BYTES = 256 << 20


def indexed(paths_a: Sequence[str], paths_b: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The distinct files of pairs (paths_a, paths_b: (P,) each, first seen first) and the pairs
    as (P, 2) int64 indices into them: a leaf of the second look decodes each file once."""
    files = list(dict.fromkeys([*paths_a, *paths_b]))
    index = {p: i for i, p in enumerate(files)}
    pairs = np.array([[index[a], index[b]] for a, b in zip(paths_a, paths_b)], dtype=np.int64).reshape(-1, 2)
    return files, pairs


class Decodes:
    """Decoded files and their framings, least recently used dropped past max_bytes (a framing's
    picture, the decode itself, counted once: counted twice, it halved what the cache held).
    A file that did not read raises the same error each time it is asked for."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.held = 0  # bytes held
        self.decoded = 0  # files decoded (each scale counts), for tests and benchmarks
        self._items: OrderedDict[tuple, tuple[object, int]] = OrderedDict()

    def rgb(self, path: str, side: int = hashing.DECODE_PX) -> tuple[np.ndarray, int, int]:
        """`hashing.decode_rgb` of the file at path (do not write into the array). Raises
        OSError or hashing.Unreadable."""
        return self._get(("rgb", path, side), lambda: self._decode(path, side))

    def decode(self, path: str, side: int) -> tuple[np.ndarray, int, int]:
        """`hashing.decode_rgb` of the file at path, counted but not held: for a caller that
        holds the views it makes of it. Raises OSError or hashing.Unreadable."""
        return self._decode(path, side)

    def framing(self, path: str) -> textbox.Framing:
        """`textbox.framing` of the file's hash-scale decode. Raises OSError or hashing.Unreadable."""
        return self._get(("framing", path), lambda: textbox.framing(self.rgb(path)[0]))

    def view(self, path: str, name: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        """The view `name` of the file at path (a thumbnail of its decode), made by make() the
        first time (do not write into it). Raises what make raises: OSError or hashing.Unreadable."""
        return self._get(("view", path, name), make)

    def spread(self, fn: Callable[..., np.ndarray], columns: Sequence, *args) -> np.ndarray:
        """fn(*columns, *args, self): a leaf of the second look over its pairs (columns: per-pair
        sequences), in this process; `lookpool.Looks` spreads it over worker processes.
        Returns fn's (P,) array. Raises what fn raises."""
        return fn(*columns, *args, self)

    def _decode(self, path: str, side: int) -> tuple[np.ndarray, int, int]:
        with open(path, "rb") as fh:
            data = fh.read()
        self.decoded += 1
        return hashing.decode_rgb(data, side)

    def _get(self, key: tuple, make):
        if key in self._items:
            self._items.move_to_end(key)
            value = self._items[key][0]
        else:
            try:
                value = make()
            except (OSError, hashing.Unreadable) as exc:
                value = exc
            self._put(key, value)
        if isinstance(value, Exception):
            raise value
        return value

    def _put(self, key: tuple, value: object) -> None:
        size = _nbytes(value)
        if isinstance(value, textbox.Framing) and value.rgb is self._decode_held(key[1]):
            size -= value.rgb.nbytes  # its picture is the decode held beside it: counted there
        self._items[key] = (value, size)
        self.held += size
        while self.held > self.max_bytes and len(self._items) > 1:
            (kind, path, *_), (old, dropped) = self._items.popitem(last=False)
            self.held -= dropped
            framed = self._items.get(("framing", path)) if kind == "rgb" and isinstance(old, tuple) else None
            if framed is not None and isinstance(framed[0], textbox.Framing) and framed[0].rgb is old[0]:
                # the framing now holds that picture alone
                self._items[("framing", path)] = (framed[0], framed[1] + old[0].nbytes)
                self.held += old[0].nbytes

    def _decode_held(self, path: str) -> np.ndarray | None:
        held = self._items.get(("rgb", path, hashing.DECODE_PX))
        return held[0][0] if held is not None and isinstance(held[0], tuple) else None


def _nbytes(value: object) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes + 64
    if isinstance(value, tuple):
        return value[0].nbytes + 64
    if isinstance(value, textbox.Framing):
        return value.rgb.nbytes + (value.clean.nbytes if value.clean is not value.rgb else 0) + 256
    return 256
