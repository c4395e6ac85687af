"""The one error type for bad task configuration or bad source data."""

from __future__ import annotations

from codeift.errors import CodeiftError


class TaskError(CodeiftError, ValueError):
    """Bad input for a task; the message names the task, the record and the field or key."""


def task_error(
    task: str, problem: str, *, record: str | int | None = None, field: str | None = None
) -> TaskError:
    """Build a TaskError whose message always starts with where the problem is."""
    where = [f"task {task!r}"]
    if record is not None:
        where.append(f"record {record}")
    if field is not None:
        where.append(f"field {field!r}")
    return TaskError(f"{', '.join(where)}: {problem}")
