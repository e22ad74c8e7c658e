"""Errors users see: each names the offending key or file and how to fix it."""


class ConfigError(ValueError):
    """A bad configuration value or input file, detected before any expensive work starts."""
