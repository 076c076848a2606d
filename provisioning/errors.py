"""The app's own exceptions: what went wrong, said in one line a person can act on."""

from __future__ import annotations


class ProvisioningError(Exception):
    """Base of the app's own errors; the message is one human line, never a Python repr."""


class ConfigurationError(ProvisioningError):
    """A setting is missing or invalid; the message names each setting (its environment
    variable) and what it must be, never the value of a secret one."""
