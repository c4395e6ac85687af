"""How a task error names where the problem is (TaskError itself lives in codeift.errors)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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


def reject_unknown(
    task: str,
    given: Iterable[str],
    allowed: Sequence[str],
    *,
    what: str,
    field: str,
    where: str = "",
) -> None:
    """Fail on any name in `given` that is not in `allowed`, listing both (a config typo fails
    loudly). `allowed` is listed in the order the caller gives; `what` names the kind of name
    ("key", "knob") and `where` (" for ...") the place it was given for."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise task_error(
            task,
            f"unknown {what}(s) {', '.join(unknown)}{where}; "
            f"allowed: {', '.join(allowed) or '(none)'}",
            field=field,
        )
