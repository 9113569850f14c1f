"""Errors caused by the user's input (a file, a shape, a field); the CLI prints them as one line."""

from __future__ import annotations


class SaeseedsError(ValueError):
    """Base class: bad input that the user can fix. The message names the file, field or shape."""


class ConfigError(SaeseedsError):
    """A config file or CLI override names an unknown field or gives a value of the wrong type."""


class CheckpointError(SaeseedsError):
    """A checkpoint directory is missing files, is corrupt, or does not match the expected layout."""


class DataError(SaeseedsError):
    """Activations have the wrong shape or dtype, contain NaN/inf, or a data file cannot be read."""
