"""Every error a stage raises on bad input or state, under one base class, so the CLI can report
any of them as one line naming the input (the traceback goes to the job log).

All of them live here, not beside the code that raises them: the set of errors is the contract
between the stages and the CLI (and the workflow's logs), one list that a test can walk
(tests/test_cli.py), and a stage can raise another's error without importing that stage. Each
module that raises one imports it from here; each stage's `__all__` exports its own.
"""

from __future__ import annotations


class CodeiftError(Exception):
    """Bad input or state that stops a stage; the message names the key, file or record."""


class ConfigError(CodeiftError, ValueError):
    """A config value the study cannot run with; the message names the key and what is allowed."""


class BackboneError(CodeiftError, RuntimeError):
    """A backbone that cannot be prepared; the message names the backbone and the source."""


class IFTError(CodeiftError, ValueError):
    """Bad IFT input that stops the job; the message names the source or mix."""


# ---- The run's setup: resources, retries, hub artifacts, the study benchmark, the GPU smoke test


class ResourceError(CodeiftError, ValueError):
    """A size label or resource request that cannot be used; names the config key."""


class RetryError(CodeiftError, ValueError):
    """A request that no retry can fix, or one above a site cap; names the key and the numbers."""


class ArtifactMissing(CodeiftError, FileNotFoundError):
    """A hub artifact that is not in the local cache while downloads are off (or that cannot be
    downloaded); the message names the artifact and the prefetch command."""


class BenchError(CodeiftError, ValueError):
    """The run cannot be read; the message names the log."""


class SmokeError(CodeiftError, RuntimeError):
    """This machine cannot run the GPU smoke test; the message says what is missing."""


# --------------------------------------------------------------------------------- codeift.models


class TemplateError(CodeiftError, ValueError):
    """A chat template that cannot be marked for assistant-only loss; the message says why."""


class SftMemoryError(CodeiftError, ValueError):
    """A request that cannot hold its job: names the backbone and the numbers."""


# ---------------------------------------------------------------------------------- codeift.train


class LaunchError(CodeiftError, ValueError):
    """A launch request that cannot be met; names what was asked for."""


class PeftError(CodeiftError, RuntimeError):
    """A PEFT request this machine cannot meet (QLoRA without bitsandbytes, or one too old)."""


class ReportingError(CodeiftError, RuntimeError):
    """A report_to choice whose package is missing; names the key and the package."""


class TrainError(CodeiftError, RuntimeError):
    """Training cannot start; the message names the backbone folder or mix."""


class GpuOutOfMemory(TrainError):
    """A CUDA out-of-memory error in SFT: a retry with the same request fails the same way."""


# ---------------------------------------------------------------------------------- codeift.tasks


class TaskError(CodeiftError, ValueError):
    """Bad input for a task; the message names the task, the record and the field or key."""


# ---------------------------------------------------------------------------------- codeift.infer


class UnsafeEntryError(CodeiftError, RuntimeError):
    """An engine-folder entry that is not ours, not private, a symlink or of the wrong type.
    Not an OSError: it must never be taken for an engine that went away (and retried)."""


class EngineError(CodeiftError, RuntimeError):
    """The shared engine could not start or answer; the message points at its log."""


class EngineStopped(EngineError):
    """The engine stopped cleanly before this job used it (evicted by another job's start)."""


class GenerationError(CodeiftError, RuntimeError):
    """Generation cannot run; the message names the model folder or task file."""


# ---------------------------------------------------------------------------------- codeift.score


class JailUnavailable(CodeiftError, RuntimeError):
    """The boundary cannot be set up here; the message says why (it becomes each row's detail)."""


class ScoringError(CodeiftError, ValueError):
    """Input that cannot be scored at all (unknown answer type, missing columns)."""


# ------------------------------------------------------------------------------- codeift.analysis


class AnalysisError(CodeiftError, ValueError):
    """A score file or mix card the analysis cannot read; the message names the file."""
