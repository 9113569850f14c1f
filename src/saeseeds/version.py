"""The package version, in a base module so every layer can record it without importing the API face."""

__version__ = "0.1.0"
