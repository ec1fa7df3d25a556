"""Errors that end a command with a one-line message, never a traceback: exit status 2 for
what the user gave (a recipe, an argument, data, a place), 1 where the command was right but
could not be carried out (a file that the machine could not write)."""

from __future__ import annotations

__all__ = ["CheckpointError", "DataError", "MiheadError", "PluginError", "RecipeError", "UsageError", "WriteError"]


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


class WriteError(MiheadError):
    """A file that could not be written (a full disk, an I/O error); the message names the file
    and its folder. Exit status 1: not a mistake in the command, which works again once the
    machine can take the write; nothing half-written is left (:mod:`mihead.files`)."""

    exit_code = 1
