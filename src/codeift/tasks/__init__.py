"""Evaluation tasks: a declarative catalogue, offline generators and real hub sources.

Public API: `load_catalog`, `resolve_task`, `build_task_frame`, `map_hub_records`, `TaskError`.
Every task becomes a frame with the columns in `TASK_COLUMNS`, whichever source it comes from,
so the later stages (prompting, scoring, reporting) never care where an item came from.
"""

from __future__ import annotations

from codeift.errors import TaskError
from codeift.tasks.catalog import load_catalog, resolve_task
from codeift.tasks.frame import TASK_COLUMNS, build_task_frame
from codeift.tasks.hub import map_hub_records

__all__ = [
    "TASK_COLUMNS",
    "TaskError",
    "build_task_frame",
    "load_catalog",
    "map_hub_records",
    "resolve_task",
]
