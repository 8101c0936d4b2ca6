"""The registry of unlearning methods: name -> loss class. ``retrain`` trains from scratch on D_r (the gold
standard) through the same loop; the trial handles it since it does not start from the base weights.

A class is imported when it is first looked up, so checking a method's name (the sweep driver, every bad-input
path) never loads torch's model stack (diffusers): that import is most of a driver's start."""
from __future__ import annotations

import importlib


class Registry(dict):
    """A dict whose ``"module:Class"`` values become the class on first lookup; other values are kept as given."""

    def __getitem__(self, name):
        value = super().__getitem__(name)
        if isinstance(value, str):
            module, cls = value.split(":")
            value = getattr(importlib.import_module(module, __name__), cls)
            self[name] = value
        return value

    def get(self, name, default=None):
        return self[name] if name in self else default


REGISTRY = Registry({
    "finetune": ".finetune:Finetune",
    "ga": ".ga:GradientAscent",
    "salun": ".salun:SalUn",
    "sa": ".sa:SelectiveAmnesia",
    "esd": ".esd:ESD",
    "erasediff": ".erasediff:EraseDiff",
    "dimum": ".dimum:DiMUM",
    "retrain": None,
})
