"""What is forgotten: a predicate over the conditions a model is conditioned on.

A dataset's labels index *conditions*. A class-conditional dataset has one factor, the object (label = class). Which conditions a dataset has is
``raysweep.datasets``' business; this module knows only conditions and predicates over them.
A two-factor dataset (``digits-styles``, UnlearnCanvas) is conditioned on (object, style); condition
``o * S + s``. The unlearning target is ``object=c``, ``style=s`` or both. Streams, methods, metrics and the
attack ask the Target which labels are forgotten, never compare a label themselves, so one code path serves
class and feature (style) unlearning.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import ConfigError


@dataclass(frozen=True)
class Conditions:
    objects: tuple[str, ...]
    styles: tuple[str, ...] = ()  # () = class-conditional only

    @property
    def factored(self) -> bool:
        return bool(self.styles)

    @property
    def n(self) -> int:
        return len(self.objects) * max(1, len(self.styles))

    def index(self, obj: int, style: int = 0) -> int:
        return obj * len(self.styles) + style if self.factored else obj

    def object_of(self, y: torch.Tensor) -> torch.Tensor:
        return y // len(self.styles) if self.factored else y

    def style_of(self, y: torch.Tensor) -> torch.Tensor:
        return y % len(self.styles) if self.factored else torch.zeros_like(y)

    def name(self, y: int) -> str:
        o = self.objects[int(self.object_of(torch.tensor(y)))]
        return f"{o}/{self.styles[int(self.style_of(torch.tensor(y)))]}" if self.factored else o


def _lookup(kind: str, value: str, names: tuple[str, ...]) -> int:
    if value in names:
        return names.index(value)
    if kind == "object" and value.isdigit() and int(value) < len(names):  # cifar10: object=3 is "cat"
        return int(value)
    raise ConfigError(f"unknown {kind} {value!r} in data.target; choose one of {list(names)}")


@dataclass(frozen=True)
class Target:
    conds: Conditions
    object: int | None = None
    style: int | None = None

    @property
    def spec(self) -> str:
        parts = ([f"object={self.conds.objects[self.object]}"] if self.object is not None else []) + (
            [f"style={self.conds.styles[self.style]}"] if self.style is not None else [])
        return ",".join(parts)

    @property
    def slug(self) -> str:  # for file names
        return self.spec.replace("=", "-").replace(",", "_")

    @property
    def attribute(self) -> str:
        return "pair" if self.object is not None and self.style is not None else (
            "object" if self.object is not None else "style")

    def mask(self, y: torch.Tensor) -> torch.Tensor:
        """True where a condition (label, or the judge's reading of an image) is the target."""
        hit = torch.ones_like(y, dtype=torch.bool)
        if self.object is not None:
            hit &= self.conds.object_of(y) == self.object
        if self.style is not None:
            hit &= self.conds.style_of(y) == self.style
        return hit

    @property
    def forget(self) -> list[int]:
        ys = torch.arange(self.conds.n)
        return ys[self.mask(ys)].tolist()

    @property
    def retain(self) -> list[int]:
        ys = torch.arange(self.conds.n)
        return ys[~self.mask(ys)].tolist()

    def _with(self, y: torch.Tensor, obj: torch.Tensor | int, style: torch.Tensor | int) -> torch.Tensor:
        if not self.conds.factored:
            return torch.as_tensor(obj, dtype=y.dtype).expand_as(y).clone()
        return torch.as_tensor(obj) * len(self.conds.styles) + torch.as_tensor(style) + torch.zeros_like(y)

    def swap(self, y: torch.Tensor) -> torch.Tensor:
        """SalUn's c': the next object (object or pair target) or the next style (style target), the rest kept."""
        o, s = self.conds.object_of(y), self.conds.style_of(y)
        if self.attribute == "style":
            return self._with(y, o, (s + 1) % len(self.conds.styles))
        return self._with(y, (o + 1) % len(self.conds.objects), s)

    def relabel(self, y: torch.Tensor) -> torch.Tensor:
        """DiMUM's D'_u labels: an alternative image keeps what the target does not constrain and takes the
        target's value for what it does (a retain digit 5 in style plain -> 5 in the target style)."""
        o, s = self.conds.object_of(y), self.conds.style_of(y)
        return self._with(y, self.object if self.object is not None else o,
                          self.style if self.style is not None else s)


def parse_target(spec: str, conds: Conditions) -> Target:
    """``object=3`` | ``style=inverted`` | ``object=3,style=inverted`` -> Target (one-line errors)."""
    obj: set[int] = set(range(len(conds.objects)))
    sty: set[int] = set(range(max(1, len(conds.styles))))
    named = {"object": False, "style": False}
    for part in (p.strip() for p in spec.split(",")):
        if "=" not in part:
            raise ConfigError(f"data.target {spec!r}: {part!r} is not key=value (object=NAME, style=NAME)")
        key, value = (v.strip() for v in part.split("=", 1))
        if key == "object":
            obj &= {_lookup("object", value, conds.objects)}
        elif key == "style":
            if not conds.factored:
                raise ConfigError(f"data.target {spec!r}: this dataset has no styles (use digits-styles)")
            sty &= {_lookup("style", value, conds.styles)}
        else:
            raise ConfigError(f"data.target {spec!r}: unknown key {key!r}; use object= and/or style=")
        named[key] = True
    if not obj or not sty:
        raise ConfigError(f"data.target {spec!r} matches no condition")
    target = Target(conds, obj.pop() if named["object"] else None, sty.pop() if named["style"] else None)
    if not target.retain:
        raise ConfigError(f"data.target {spec!r} matches every condition: nothing would be retained")
    return target
