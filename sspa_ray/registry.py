"""The registries of named implementations whose names config.py declares (as timm registers its models).

config.py declares a key's choices (METHODS for method.name, BACKBONES for model.backbone): it sits
above engine/ and model/ in the layering, so the choices, checks and did-you-mean hints of a key
cannot come from the classes that implement it. A Registry keeps the two one list, both ways:
registering a name that config.py does not declare fails, and `check()`, called once a package has
imported every file that registers, fails for a declared name that nothing registered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """name -> class or builder, for the names of config.py's tuple `declared_as` (the choices of `key`).
    `add` says what to write for a missing name, with ``{name}`` in it."""

    def __init__(self, key: str, declared: Sequence[str], declared_as: str, add: str):
        super().__init__()
        self.key, self.declared, self.declared_as, self.add = key, tuple(declared), declared_as, add

    def register(self, name: str, item: T) -> T:
        if name not in self.declared:
            raise ValueError(f"{self.key} {name!r} is not declared: add it to {self.declared_as} in sspa_ray/config.py "
                             f"(the key's choices, now {', '.join(self.declared)})")
        self[name] = item
        return item

    def check(self) -> None:
        """Every declared name has its implementation (call it after importing every file that registers)."""
        missing = [name for name in self.declared if name not in self]
        if missing:
            raise ImportError(f"{self.key} {missing[0]!r} is declared in sspa_ray/config.py's {self.declared_as} but "
                              f"nothing registers it: add {self.add.format(name=missing[0])}")
