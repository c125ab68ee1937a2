"""Errors a user can act on. ``sweep.py`` prints their message on one line and exits with code 2."""


class ConfigError(ValueError):
    """A configuration value, name or option is wrong; the message says what and how to fix it."""


class DataError(ConfigError):
    """Dataset files are missing or malformed; the message says where the files must go."""
