"""`python -m codeift <stage>`: a stage's own error ends as one line naming the input."""

from __future__ import annotations

import json

from codeift import errors
from codeift.cli import main


def test_a_stage_error_is_one_line_after_its_traceback(tmp_path, capsys) -> None:
    code = main(
        [
            "build-task",
            *("--name", "no_such_task", "--entry", json.dumps({"domain": "symbolic", "size": 3})),
            *("--seed", "0", "--out", str(tmp_path / "t.parquet")),
        ]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert lines[0].startswith("Traceback")
    assert lines[-1].startswith("codeift build-task: TaskError: task 'no_such_task'")
    assert not (tmp_path / "t.parquet").exists()


def test_every_stage_error_shares_the_base_class() -> None:
    from codeift.infer.generate import GenerationError
    from codeift.infer.server import EngineError
    from codeift.models.chat_templates import TemplateError
    from codeift.resources import ResourceError
    from codeift.score.answers import ScoringError
    from codeift.score.jail import JailUnavailable
    from codeift.tasks.errors import TaskError
    from codeift.train.launch import LaunchError
    from codeift.train.sft import TrainError

    stage_errors = [
        errors.ConfigError,
        errors.BackboneError,
        errors.IFTError,
        GenerationError,
        EngineError,
        TemplateError,
        ResourceError,
        ScoringError,
        JailUnavailable,
        TaskError,
        LaunchError,
        TrainError,
    ]
    assert all(issubclass(error, errors.CodeiftError) for error in stage_errors)


def test_a_task_file_without_prompts_or_rows_is_named(tmp_path) -> None:
    import polars as pl
    import pytest

    from codeift.infer.generate import GenerationError, read_task

    path = tmp_path / "t.parquet"
    pl.DataFrame({"id": ["a"]}).write_parquet(path)
    with pytest.raises(GenerationError, match=r"task file .*t\.parquet: missing .*prompt"):
        read_task(path)
    from codeift.tasks import TASK_COLUMNS

    pl.DataFrame({name: [] for name in TASK_COLUMNS}).write_parquet(path)
    with pytest.raises(GenerationError, match=r"task file .*t\.parquet: empty"):
        read_task(path)
