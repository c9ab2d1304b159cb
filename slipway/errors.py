"""Errors the core raises for user mistakes, so callers can show a message instead of a trace."""


class SlipwayError(Exception):
    """Base class for errors caused by input or configuration, not by a bug."""


class DataError(SlipwayError):
    """The dataset is missing, empty or unusable."""


class ModelError(SlipwayError):
    """A model cannot be built or loaded (unknown architecture, bad folder, bad weights)."""


class ConfigError(SlipwayError):
    """A configuration file, override or environment variable is invalid; the text names it."""


class ServerError(SlipwayError):
    """A server started as a child process exited or did not get ready; the text ends with its
    output."""
