"""Error classes. Every error a user can cause names the input and what is wrong with it."""


class GaeaError(Exception):
    """Base class of every error this project raises on purpose."""


class BadInputError(GaeaError, ValueError):
    """An input (file, argument, record) is missing or malformed."""


class ConfigError(GaeaError, ValueError):
    """A configuration value or combination of values is invalid."""


class BackendError(GaeaError, RuntimeError):
    """A model backend failed to produce an answer."""


class BackendUnreachableError(BackendError):
    """An HTTP backend could not be reached at all (refused, DNS, timeout after retries)."""


class OSMError(GaeaError, RuntimeError):
    """OpenStreetMap data could not be read or queried."""


class NoLocationError(GaeaError, ValueError):
    """A model answer contains no usable location."""


class RunInUseError(GaeaError, RuntimeError):
    """A run directory is held by another process (a second run into it must not write)."""
