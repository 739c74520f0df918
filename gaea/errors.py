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


class RunInUseError(GaeaError, RuntimeError):
    """A run directory is held by another process (a second run into it must not write)."""


class PhotoRejected(BadInputError):
    """One input (a photo, a manifest row) cannot be used, for `reason`; a build skips it and says why.

    Reasons: missing, not_a_file, unreadable, empty, too_large, not_an_image, corrupt (the file or its
    name); no_gps, empty_gps, bad_coordinates (its position); bad_row, duplicate (its manifest row).
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
