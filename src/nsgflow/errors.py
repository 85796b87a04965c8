"""The project's own exceptions: every error a user can cause is one of these."""

__all__ = ["ConfigError", "FrameError", "NsgflowError", "UsageError"]


class NsgflowError(Exception):
    """Base class of all errors nsgflow raises on purpose; the message says what to fix."""


class FrameError(NsgflowError, ValueError):
    """A frame cannot be read or used (unreadable file, wrong shape, too few stars, ...).

    Also a :class:`ValueError`, as the science functions raise it for data they cannot use.
    """


class ConfigError(NsgflowError):
    """A setting or a command-line argument is invalid."""


class UsageError(ConfigError):
    """The command line itself is wrong (an option, its value, a file it names); ``nsgflow`` exits with 2."""
