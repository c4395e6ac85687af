"""scripts/compare_results.py: two results folders, each file in one class, masks counted.

The tool is how issue 27 shows a refactor left the outputs unchanged, so what matters is that a
real difference is never masked away: a changed value in a column or key no mask names, or a
path that differs by more than the results folder's name, is reported as different and fails the
exit status, while the masked ones (folder prefix, wall-clock seconds) are listed with counts.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import polars as pl
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_results.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("compare_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


class Args:
    """Stands in for TrainingArguments: pickled by torch.save, read back by its to_dict()."""

    def __init__(self, output_dir: str, learning_rate: float) -> None:
        self.output_dir, self.learning_rate = output_dir, learning_rate

    def to_dict(self) -> dict:
        return {"output_dir": self.output_dir, "learning_rate": self.learning_rate}


def generations(folder: str, correct: list[bool]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ["t-0", "t-1"],
            "response": ["4", "five"],
            "correct": correct,
            "model_path": [f"{folder}/models/smollm2/code0"] * 2,
        }
    )


def write(root: Path, files: dict[str, object]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, pl.DataFrame):
            content.write_parquet(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
    return root


def run_record(folder: str, seconds: float, steps: int = 32) -> dict:
    return {"mix": f"{folder}/ift/mixes/code0.parquet", "seconds": seconds, "global_step": steps}


@pytest.fixture
def folders(tmp_path):
    """A and B as two runs of one study: B named `results`, A `results-old`."""
    a = write(
        tmp_path / "results-old",
        {
            "generations/code0/gsm8k.parquet": generations("results-old", [True, False]),
            "scores/code0/gsm8k.parquet": generations("results-old", [True, False]),
            "models/code0/codeift_training.json": run_record("results-old", 221.5),
            "summary/task.csv": "task,accuracy\ngsm8k,0.5\n",
            "logs/sft/code0.log": "started 18:11:50\n",
            "curve/code0/step0016/gsm8k.parquet": generations("results-old", [True, True]),
        },
    )
    b = write(
        tmp_path / "results",
        {
            "generations/code0/gsm8k.parquet": generations("results", [True, False]),
            # a real difference: one reply scored otherwise
            "scores/code0/gsm8k.parquet": generations("results", [True, True]),
            "models/code0/codeift_training.json": run_record("results", 205.7),
            "summary/task.csv": "task,accuracy\ngsm8k,0.5\n",
            "logs/sft/code0.log": "started 19:02:11\n",
            "report.html": "<html></html>",
        },
    )
    return a, b


def classes(comparison) -> dict[str, str]:
    out = {p: "only in A" for p in comparison.only_a} | {p: "only in B" for p in comparison.only_b}
    return out | {r.path: r.status for r in comparison.results}


def test_each_file_lands_in_its_class(tool, folders):
    a, b = folders
    comparison = tool.compare(a, b, tool.Prefixes("results-old", "results"))
    assert classes(comparison) == {
        "curve/code0/step0016/gsm8k.parquet": "only in A",
        "generations/code0/gsm8k.parquet": "masked",
        "models/code0/codeift_training.json": "masked",
        "scores/code0/gsm8k.parquet": "different",
        "summary/task.csv": "identical",
    }
    assert comparison.skipped == {"logs": {"A": 1, "B": 1}, "report.html": {"B": 1}}


def test_masks_are_counted_by_key(tool, folders):
    a, b = folders
    results = {
        r.path: r for r in tool.compare(a, b, tool.Prefixes("results-old", "results")).results
    }
    assert results["generations/code0/gsm8k.parquet"].masked == {("folder prefix", "model_path"): 2}
    assert results["models/code0/codeift_training.json"].masked == {
        ("folder prefix", "mix"): 1,
        ("wall clock", "seconds"): 1,
    }


def test_a_real_difference_is_reported_not_masked(tool, folders):
    """The scores file differs in `correct` (no mask covers it) and in `model_path` (masked):
    the file is different, the difference names the column and both values, and the masked
    column is still counted."""
    a, b = folders
    results = {
        r.path: r for r in tool.compare(a, b, tool.Prefixes("results-old", "results")).results
    }
    scores = results["scores/code0/gsm8k.parquet"]
    assert scores.status == "different"
    assert scores.differences == [
        "correct: 1 value(s) differ, first at ['correct', 1]: A=False B=True"
    ]
    assert scores.masked == {("folder prefix", "model_path"): 2}


def test_exit_status_fails_on_a_difference_and_passes_without(tool, folders, capsys):
    a, b = folders
    assert tool.main([str(a), str(b), "--expected-only", "curve"]) == 1
    out = capsys.readouterr().out
    assert "| different | 1 |" in out and "`scores/code0/gsm8k.parquet`" in out
    (b / "scores/code0/gsm8k.parquet").unlink()
    generations("results", [True, False]).write_parquet(b / "scores/code0/gsm8k.parquet")
    assert tool.main([str(a), str(b), "--expected-only", "curve"]) == 0
    out = capsys.readouterr().out
    assert "| equal after masking | 3 |" in out and "| `curve/code0/step0016/` | 1 |" in out
    # a file on one side only fails unless its folder is named as expected
    assert tool.main([str(a), str(b)]) == 1


@pytest.mark.parametrize(
    ("value_a", "value_b", "masked"),
    [
        ("results-old/models/code0", "results/models/code0", True),
        ("results-old", "results", True),
        # more than the folder name differs: the arm, or a longer folder name
        ("results-old/models/code0", "results/models/code50", False),
        ("results-old2/models/code0", "results/models/code0", False),
        ("old-results-old/models/code0", "old-results/models/code0", False),
        ("/elsewhere/results-old/models/code0", "/here/results/models/code0", False),
    ],
)
def test_folder_prefix_needs_the_whole_folder_name(tool, value_a, value_b, masked):
    assert tool.Prefixes("results-old", "results").same(value_a, value_b) is masked


@pytest.mark.parametrize(
    ("record_b", "status"),
    [
        (run_record("results", 1.0), "masked"),  # only the seconds differ
        (run_record("results", 221.5, steps=31), "different"),  # a counted field
        ({**run_record("results", 221.5), "extra": 1}, "different"),  # a key on one side only
        ({**run_record("results", 221.5), "seconds": "fast"}, "different"),  # not a time
    ],
)
def test_json_masks_only_wall_clock_keys(tool, tmp_path, record_b, status):
    a = write(tmp_path / "results-old", {"run.json": run_record("results-old", 221.5)})
    b = write(tmp_path / "results", {"run.json": record_b})
    (result,) = tool.compare(a, b, tool.Prefixes("results-old", "results")).results
    assert result.status == status


def test_equal_frames_in_other_bytes_are_named_decoded_equal(tool, tmp_path):
    frame = generations("results", [True, False])
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    frame.write_parquet(a / "x.parquet", compression="zstd")
    frame.write_parquet(b / "x.parquet", compression="uncompressed")
    (result,) = tool.compare(a, b, tool.Prefixes("a", "b")).results
    assert (result.status, dict(result.masked)) == (
        "masked",
        {("decoded equal", "(whole file)"): 1},
    )


def test_training_args_compared_by_to_dict(tool, tmp_path):
    torch = pytest.importorskip("torch")
    for folder, rate in (("results-old", 2e-4), ("results", 2e-4), ("other", 1e-4)):
        (tmp_path / folder / "m").mkdir(parents=True)
        torch.save(
            Args(f"{folder}/checkpoints/code0", rate), tmp_path / folder / "m" / "training_args.bin"
        )
    same = tool.compare(
        tmp_path / "results-old", tmp_path / "results", tool.Prefixes("results-old", "results")
    )
    assert same.results[0].masked == {("folder prefix", "output_dir"): 1}
    changed = tool.compare(
        tmp_path / "results-old", tmp_path / "other", tool.Prefixes("results-old", "other")
    )
    assert changed.results[0].status == "different"
    assert changed.results[0].differences[0].startswith("learning_rate:")
