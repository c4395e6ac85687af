"""codeift.layout: the rules and the stages find a job's files from the same templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeift import layout
from codeift.infer.generate import planned_siblings


@pytest.mark.parametrize("results", ["results", "/tmp/study/out", "."])
def test_a_sibling_is_the_same_layout_with_other_wildcards(results):
    own = layout.path(results, layout.GENERATIONS, backbone="b", variant="code50", task="gsm8k")
    assert layout.parse(own, layout.GENERATIONS) == (
        str(Path(results)),
        {"backbone": "b", "variant": "code50", "task": "gsm8k"},
    )
    assert layout.sibling(own, layout.GENERATIONS, task="coin_flip") == layout.path(
        results, layout.GENERATIONS, backbone="b", variant="code50", task="coin_flip"
    )


def test_a_file_outside_the_layout_is_named_in_the_error():
    with pytest.raises(ValueError, match="elsewhere.parquet: not laid out as"):
        layout.parse("out/elsewhere.parquet", layout.TASK)


def test_the_rules_templates_are_the_layouts():
    """The rules read their paths from codeift.layout: no rule writes a results path itself."""
    rules = Path(__file__).resolve().parents[1] / "workflow" / "rules"
    text = "\n".join(path.read_text() for path in sorted(rules.glob("*.smk")))
    for template in (
        layout.TASK,
        layout.GENERATIONS,
        layout.SCORES,
        layout.MIX,
        *layout.LOGS.values(),
    ):
        assert template.replace("{", "{{").replace("}", "}}") not in text


def test_generation_outside_the_layout_generates_only_its_own_task(tmp_path, capsys):
    task, out = tmp_path / "gsm8k.parquet", tmp_path / "answers.parquet"
    (tmp_path / "coin_flip.parquet").write_bytes(b"")
    assert planned_siblings(task, out, ["coin_flip", "gsm8k"]) == []
    assert "no task generated ahead" in capsys.readouterr().out
