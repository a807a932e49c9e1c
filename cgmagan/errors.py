"""Errors whose message alone tells the user what to do; the CLI prints them without a traceback."""


class UserError(Exception):
    """Bad input or configuration: the message names what was looked for and what to change."""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work: the message lists the accepted ones."""


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset is missing or not in its published layout."""


class WeightsNotFoundError(UserError, FileNotFoundError):
    """Pretrained weights asked for but not in the local cache (nothing is downloaded)."""


class DatasetTooSmallError(UserError, ValueError):
    """A dataset was found, but its splits leave one empty or unreadable."""


class NumericalError(UserError, FloatingPointError):
    """NaN or Inf where a number must be finite; the message names where it appeared."""
