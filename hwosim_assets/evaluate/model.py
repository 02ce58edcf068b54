"""A model under test: loaded by reference, called one packet at a time, failures named.

A model is any Python object with river's one-at-a-time methods (river is the
usual library for online learning, so its users already know them):

* ``predict_one(packet)`` -> a prediction (see :mod:`.predictions`), or None;
* ``score_one(packet)`` -> an anomaly score per value (river's anomaly
  detectors' method), scored by average precision;
* ``learn_one(packet)`` -> None: called after the predictions for the same
  packet (test-then-train, as river's ``progressive_val_score`` does);
* ``finish()`` -> a last prediction when the stream ends (an event only
  certain once everything was seen; the final list of gaps), optional;
* ``families``: optional tuple of the families it reads (``"spectra"``,
  ``"images"``); other families are skipped, not failed.

It is named by reference, ``package.module:factory`` (a class or a function
returning the object), with keyword parameters, so that a models.yaml entry
or the command line can name any installed or importable model. A factory
that takes a ``seed`` parameter gets the run's seed unless the parameters
give one.

Scores must say which model made them: :class:`LoadedModel` carries the
reference, the parameters, the version of the distribution that ships it
(when it is an installed package) and a hash of its module's source and
parameters, so a changed model gives a changed scorecard identity.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import json
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hwosim_assets.evaluate.predictions import Located

REFERENCE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
METHODS = ("predict_one", "score_one")


class ModelError(RuntimeError):
    """A model that cannot be loaded, raised, or answered with something malformed.

    The message names the model and, once packets flow, the packet; the
    scorecard keeps it as the model's failure."""


def check_reference(reference: str) -> tuple[str, str]:
    """(module, attribute path) of ``package.module:factory``, or ModelError saying the form."""
    if not isinstance(reference, str) or not REFERENCE.fullmatch(reference):
        raise ModelError(
            f"model reference {reference!r} is not of the form package.module:factory "
            "(a module path, a colon, and the class or function that makes the model)"
        )
    module, attribute = reference.split(":")
    return module, attribute


@dataclass
class LoadedModel:
    """One model object and the identity its scores are stored under."""

    name: str
    reference: str
    params: dict[str, Any]
    obj: Any
    version: str  # distribution version, or "" for a module that is not installed
    model_hash: str  # sha256 of the factory's module source and the parameters, 16 hex
    families: tuple[str, ...] = ("spectra", "images")
    calls: dict[str, Any] = field(default_factory=dict)  # bound methods the model has

    def handles(self, family: str) -> bool:
        return family in self.families

    def failure(self, what: str, packet: Located | None = None, detail: str = "") -> ModelError:
        """The error for ``what`` went wrong (at ``packet`` when given)."""
        at = f" at {packet.where}" if packet is not None else ""
        return ModelError(f"model {self.name!r} ({self.reference}) {what}{at}" + (f": {detail}" if detail else ""))


@functools.cache
def _distributions() -> dict[str, list[str]]:
    """Top-level module -> installed distributions (a scan of site-packages: once per process)."""
    return dict(importlib.metadata.packages_distributions())


def _identity(factory: Any, params: dict[str, Any]) -> tuple[str, str]:
    """(distribution version, source hash) of the code behind ``factory``."""
    module = inspect.getmodule(factory)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=repr).encode())
    version = ""
    if module is not None:
        try:
            path = inspect.getsourcefile(module)
            if path:
                with open(path, "rb") as handle:
                    digest.update(handle.read())
        except (OSError, TypeError):
            pass  # built-in or frozen: the parameters and the name stand for it
        digest.update(module.__name__.encode())
        top = module.__name__.split(".")[0]
        for dist in _distributions().get(top, []):
            try:
                version = f"{dist} {importlib.metadata.version(dist)}"
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return version, digest.hexdigest()[:16]


def load_model(
    reference: str, params: dict[str, Any] | None = None, *, name: str | None = None, seed: int | None = None
) -> LoadedModel:
    """Import ``reference`` and call its factory with ``params``; ModelError names what failed."""
    module_name, attribute = check_reference(reference)
    name = name or attribute.split(".")[-1]
    params = dict(params or {})
    label = f"model {name!r} ({reference})"
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelError(f"{label}: cannot import {module_name!r}: {error}") from None
    except Exception as error:  # noqa: BLE001 - a module that fails on import is the model's failure
        raise ModelError(f"{label}: importing {module_name!r} raised {type(error).__name__}: {error}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelError(
                f"{label}: {target.__name__ if hasattr(target, '__name__') else target!r} has no attribute {part!r}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise ModelError(f"{label}: {attribute} is not a class or function")
    call_params = dict(params)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        signature = None
    if seed is not None and signature is not None and "seed" in signature.parameters and "seed" not in call_params:
        call_params["seed"] = seed
    try:
        obj = target(**call_params)
    except Exception as error:  # noqa: BLE001
        raise ModelError(f"{label}: {attribute}(**{params}) raised {type(error).__name__}: {error}") from None
    calls = {
        m: getattr(obj, m)
        for m in ("predict_one", "score_one", "learn_one", "finish")
        if callable(getattr(obj, m, None))
    }
    if not any(m in calls for m in METHODS):
        raise ModelError(
            f"{label}: the object has neither predict_one nor score_one; see hwosim_assets/evaluate/model.py"
        )
    families = getattr(obj, "families", ("spectra", "images"))
    if isinstance(families, str) or not all(f in ("spectra", "images") for f in families):
        raise ModelError(f"{label}: families must be a tuple of 'spectra' and/or 'images', got {families!r}")
    version, model_hash = _identity(target, call_params)
    return LoadedModel(name, reference, call_params, obj, version, model_hash, tuple(families), calls)


def forget_module(reference: str) -> None:
    """Drop a model's module from the import cache (tests that rewrite a model file in place)."""
    module_name, _ = check_reference(reference)
    sys.modules.pop(module_name, None)
