"""Errors that end a command with exit status 2 and a one-line message, never a traceback."""

from __future__ import annotations

__all__ = ["CheckpointError", "DataError", "MiheadError", "PluginError", "RecipeError", "UsageError"]


class MiheadError(Exception):
    """A problem the user can fix; its message is the whole report."""

    exit_code = 2


class RecipeError(MiheadError):
    """A recipe or ``--set`` value that is not valid; the message names file, section, key."""


class PluginError(MiheadError):
    """A plugin that cannot be loaded or registers something invalid; the message names it."""


class DataError(MiheadError):
    """Data that is absent or unusable; the message names the path."""


class CheckpointError(MiheadError):
    """A checkpoint that is absent, truncated or corrupt; the message names the file."""


class UsageError(MiheadError):
    """A command-line argument that is not valid for what it names (e.g. a head the run lacks)."""
