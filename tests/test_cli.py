"""`python -m codeift <stage>`: a stage's own error ends as one line naming the input."""

from __future__ import annotations

import ast
import json

import pytest

from codeift import cli, errors
from codeift.cli import main
from tests.conftest import REPO

SRC = REPO / "src" / "codeift"


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


# Every error a stage raises to the CLI lives in codeift.errors (its docstring says why): the list
# the CLI's contract covers is read from that module, never kept here by hand.
STAGE_ERRORS = sorted(
    (
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, Exception)
        and value.__module__ == errors.__name__
    ),
    key=lambda error: error.__name__,
)


def error_classes_defined(source: str) -> list[str]:
    """The classes in `source` whose bases name an error of codeift.errors."""
    names = {error.__name__ for error in STAGE_ERRORS}
    return [
        node.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ClassDef)
        and any(ast.unparse(base).rpartition(".")[2] in names for base in node.bases)
    ]


def test_stage_errors_are_listed_in_codeift_errors_only() -> None:
    assert len(STAGE_ERRORS) > 10
    assert all(issubclass(error, errors.CodeiftError) for error in STAGE_ERRORS)
    elsewhere = {
        str(path.relative_to(SRC)): defined
        for path in sorted(SRC.rglob("*.py"))
        if path != SRC / "errors.py"
        and (defined := error_classes_defined(path.read_text(encoding="utf-8")))
    }
    assert not elsewhere, f"stage errors defined outside codeift/errors.py: {elsewhere}"


def test_the_error_check_sees_a_subclass_of_a_stage_error() -> None:
    source = (
        "import codeift.errors\nclass A(codeift.errors.TaskError): ...\nclass B(ValueError): ..."
    )
    assert error_classes_defined(source) == ["A"]


@pytest.mark.parametrize("error", STAGE_ERRORS, ids=lambda error: error.__name__)
def test_every_stage_error_is_one_line_naming_it(error, monkeypatch, capsys) -> None:
    def handler(args) -> None:
        raise error("key 'x': bad")

    monkeypatch.setattr(cli, "cmd_build_task", handler)
    argv = ["build-task", "--name", "n", "--entry", "{}", "--seed", "0", "--out", "o.parquet"]
    assert cli.main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"codeift build-task: {error.__name__}: key 'x': bad"


def test_a_task_file_without_prompts_or_rows_is_named(tmp_path) -> None:
    import polars as pl

    from codeift.infer.generate import GenerationError, read_task

    path = tmp_path / "t.parquet"
    pl.DataFrame({"id": ["a"]}).write_parquet(path)
    with pytest.raises(GenerationError, match=r"task file .*t\.parquet: missing .*prompt"):
        read_task(path)
    from codeift.tasks import TASK_COLUMNS

    pl.DataFrame({name: [] for name in TASK_COLUMNS}).write_parquet(path)
    with pytest.raises(GenerationError, match=r"task file .*t\.parquet: empty"):
        read_task(path)
