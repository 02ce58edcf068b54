"""The randomness one kind may use, keyed so that chunking never matters.

A kind asks for a :class:`~hwosim_assets.perturb.rng.Stream` per scope:

* ``packets(seq)`` - numbers owned by one packet (noise field, event counts);
* ``epochs(frame_or_integration)`` - shared by every tile of a frame (jitter,
  1/f stripes), so all tiles of one exposure agree;
* ``observation(index)`` - fixed for the whole observation (hot-pixel map,
  dead columns, random-walk steps, dropout bursts);
* ``time_bins(bin)`` - events placed on an absolute time grid (persistence).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from hwosim_assets.perturb.rng import Stream, stream_key


class Draws:
    def __init__(self, seed: int, profile_hash: str, observation: str, kind: str):
        self.seed = seed
        self.profile_hash = profile_hash
        self.observation_id = observation
        self.kind = kind

    def key(self, scope: str) -> int:
        return self._keys[scope]

    @cached_property
    def _keys(self) -> dict[str, int]:
        return {
            scope: stream_key(self.seed, self.profile_hash, self.observation_id, self.kind, scope)
            for scope in ("packet", "epoch", "observation", "time_bin")
        }

    def packets(self, seq: np.ndarray) -> Stream:
        return Stream(self.key("packet"), seq)

    def epochs(self, epoch: np.ndarray) -> Stream:
        return Stream(self.key("epoch"), epoch)

    def observation(self, index: np.ndarray | int = 0) -> Stream:
        return Stream(self.key("observation"), np.atleast_1d(index))

    def time_bins(self, bins: np.ndarray) -> Stream:
        return Stream(self.key("time_bin"), bins)
