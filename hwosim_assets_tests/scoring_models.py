"""Models the scoring tests load by reference (``hwosim_assets_tests.scoring_models:Name``).

They live in a module of their own, not in a test file: pytest imports test
files under another name, and a model loaded by reference must be the one the
test configured.
"""

from __future__ import annotations

import time

import numpy as np

# set by a test: seq -> the answer a perfect model would give for that packet
ANSWERS: dict[int, dict] = {}


class Oracle:
    """Answers what the test put in ANSWERS: perfect flags and cleaned values (or, inverted, all wrong)."""

    def __init__(self, invert: bool = False):
        self.invert = invert

    def predict_one(self, packet):
        answer = ANSWERS[packet.seq]
        flags = answer["flags"].reshape(packet.values.shape)
        return {"flags": ~flags if self.invert else flags, "cleaned": answer["cleaned"].reshape(packet.values.shape)}


class Raises:
    """Raises at the packet with seq ``at``."""

    def __init__(self, at: int = 3):
        self.at = at

    def predict_one(self, packet):
        if packet.seq == self.at:
            raise ValueError(f"cannot cope with seq {packet.seq}")
        return {"flags": np.zeros(packet.values.shape, dtype=bool)}


class Malformed:
    """Answers something malformed at the packet with seq ``at``: ``what`` says which mistake."""

    def __init__(self, what: str = "shape", at: int = 2):
        self.what, self.at = what, at

    def predict_one(self, packet):
        ok = np.zeros(packet.values.shape, dtype=bool)
        if packet.seq != self.at:
            return {"flags": ok}
        return {
            "shape": {"flags": ok[:-1]},
            "dtype": {"flags": ok.astype(float)},
            "key": {"flagz": ok},
            "kind": {"flags": ok, "kinds": {"gremlins": ok}},
            "event": {"events": [{"kind": "transit", "time": "noon"}]},
            "type": ["not", "a", "dict"],
        }[self.what]


class Slow:
    """Takes ``seconds`` per packet, flags nothing: where does it stop keeping up?"""

    def __init__(self, seconds: float = 0.005):
        self.seconds = seconds

    def predict_one(self, packet):
        time.sleep(self.seconds)
        return {"flags": np.zeros(packet.values.shape, dtype=bool)}


class Scorer:
    """An anomaly detector in river's style: score_one only (|value - its neighbours' median| / the
    packet's median ERR). Not / its own ERR: perturbed products grow ERR with the noise a kind adds
    (issue 9), so a value's own ERR hides what moved it; and not the packet median: a shifted or
    drifting spectrum moves most channels at once (level 3 moves ~40 % of the sample's by > 5 ERR)."""

    def score_one(self, packet):
        values = np.asarray(packet.values, dtype=float)
        padded = np.pad(values, 2, mode="edge")
        neighbours = np.nanmedian(np.stack([padded[i : i + len(values)] for i in (0, 1, 3, 4)]), axis=0)
        scale = np.nanmedian(np.asarray(packet.errors, dtype=float))
        return np.nan_to_num(np.abs(values - neighbours) / scale, nan=0.0, posinf=1e30)


class NoMethods:
    pass


def broken_factory(**kwargs):
    raise RuntimeError("the factory itself fails")
