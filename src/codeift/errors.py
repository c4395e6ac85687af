"""One base class for the errors a stage raises on bad input, so the CLI can report any of them
as one line naming the input (the traceback goes to the job log)."""

from __future__ import annotations


class CodeiftError(Exception):
    """Bad input or state that stops a stage; the message names the key, file or record."""


class ConfigError(CodeiftError, ValueError):
    """A config value the study cannot run with; the message names the key and what is allowed."""


class BackboneError(CodeiftError, RuntimeError):
    """A backbone that cannot be prepared; the message names the backbone and the source."""


class IFTError(CodeiftError, ValueError):
    """Bad IFT input that stops the job; the message names the source or mix."""
