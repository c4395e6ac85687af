"""How a task error names where the problem is (TaskError itself lives in codeift.errors)."""

from __future__ import annotations

from codeift.errors import TaskError


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
