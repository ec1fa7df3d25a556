"""What every plugin class shares: a registry name, a kind and its declared parameters."""

from __future__ import annotations

from typing import ClassVar, TypeAlias

from mihead.contracts.params import Params

PluginParams: TypeAlias = Params
"""``Params`` by another name, for annotations inside classes whose ``Params`` attribute shadows it."""

__all__ = ["Plugin"]


class Plugin:
    """Mixin for plugin classes.

    ``name`` is the key a recipe uses (``name = "iic"``) and must be unique within its kind;
    ``Params`` is the frozen dataclass of the parameters a recipe section may set. The
    instance keeps the validated parameters as ``self.params``.
    """

    kind: ClassVar[str]
    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    params: PluginParams

    @classmethod
    def unused_keys(cls) -> frozenset[str]:
        """Keys of ``Params`` the plugin ignores, which a recipe may not set away from their
        defaults (none; a dataset names the common dataset keys it does not honour)."""
        return frozenset()
