"""Small value classes that cost nothing to define beyond their compiled bytecode.

``@dataclass`` writes the source of ``__init__``, ``__repr__``, ``__eq__`` (and, frozen, of
``__setattr__``, ``__delattr__`` and ``__hash__``) and compiles it with ``exec`` when the class is
created: about 3M executed instructions per class, paid at every cold start by each class on the
import path. A :class:`Value` instead annotates its fields at class level (their order is the
fields' order), stores them in ``__slots__`` and writes its own ``__init__``; equality and
``repr`` (and for a :class:`FrozenValue`, hashing and immutability) are these shared methods,
behaving as a dataclass's do.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError  # loaded already (pydantic uses dataclasses)
from typing import TYPE_CHECKING, Any, ClassVar


class Value:
    """Equal to a value of the same class with equal fields (then not hashable, as it may change),
    shown as ``Name(field=value, ...)``."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()  # the annotated names, in order

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._fields = tuple(cls.__annotations__)  # its own (Python 3.10+), not a base's
        if set(cls._fields) != set(cls.__dict__.get("__slots__", ())):
            raise TypeError(f"{cls.__qualname__}: __slots__ must name exactly its annotated fields")

    def _field_values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._field_values() == other._field_values()

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({shown})"


class FrozenValue(Value):
    """A :class:`Value` that cannot change once built (its ``__init__`` sets fields with
    ``object.__setattr__``), and so is hashable by its fields."""

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(self._field_values())

    if not TYPE_CHECKING:  # (declared, mypy would allow assigning any attribute)

        def __setattr__(self, name: str, value: object) -> None:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self, name: str) -> None:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
