"""What every plugin class shares: a registry name, a kind and its declared parameters."""

from __future__ import annotations

import typing
from typing import Any, ClassVar, Generic

from typing_extensions import TypeVar

from mihead.contracts.params import Params

__all__ = ["Plugin"]

ParamsT = TypeVar("ParamsT", bound=Params, covariant=True, default=Params)
"""The type of a plugin's validated parameters (covariant: a plugin's parameters are fixed
once it is built, so an ``Objective[IICParams]`` is an ``Objective[ObjectiveParams]``)."""


class Plugin(Generic[ParamsT]):
    """Mixin for plugin classes, generic over the type of their parameters.

    ``name`` is the key a recipe uses (``name = "iic"``) and must be unique within its kind.
    A plugin class binds its parameters' type, a frozen dataclass of the keys a recipe section
    may set, where it names its base (``class IIC(Objective[IICParams])``); the class attribute
    ``Params``, which the recipe loader reads, is set from that binding, and the instance keeps
    the validated parameters as ``self.params``, typed as that class. A class that sets
    ``Params`` itself without binding the type (the older way) keeps it.
    """

    kind: ClassVar[str]
    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    params: ParamsT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        bound = _bound_params(cls)
        if bound is None:
            return
        declared = cls.__dict__.get("Params", bound)
        if declared is not bound:
            raise TypeError(f"{cls.__qualname__} binds {bound.__qualname__} as its parameters but sets Params = {getattr(declared, '__qualname__', declared)}")
        cls.Params = bound

    @classmethod
    def unused_keys(cls) -> frozenset[str]:
        """Keys of ``Params`` the plugin ignores, which a recipe may not set away from their
        defaults (none; a dataset names the optional keys it does not honour)."""
        return frozenset()


def _bound_params(cls: type) -> type[Params] | None:
    """The parameters' type that ``cls`` binds where it names a generic plugin base
    (``Objective[IICParams]``), or None when it binds none there."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = typing.get_origin(base)
        if isinstance(origin, type) and issubclass(origin, Plugin):
            for arg in typing.get_args(base):
                if isinstance(arg, type) and issubclass(arg, Params):
                    return arg
    return None
