"""Same config and seed give the same bytes: pool, mixes, test sets."""

from __future__ import annotations

import json

from codeift.cli import main
from codeift.io import file_hash

SOURCES = json.dumps([{"kind": "generator", "name": "g", "n_general": 60, "n_code": 60}])


def _data_stage(root) -> dict[str, str]:
    main(
        [
            "build-pool",
            "--sources",
            SOURCES,
            "--seed",
            "0",
            "--out",
            str(root / "pool.parquet"),
            "--report",
            str(root / "pool.json"),
        ]
    )
    main(
        [
            "build-mix",
            "--pool",
            str(root / "pool.parquet"),
            "--pool-report",
            str(root / "pool.json"),
            "--proportion",
            "50",
            "--total",
            "30",
            "--seed",
            "0",
            "--out",
            str(root / "mix.parquet"),
            "--card",
            str(root / "card.json"),
        ]
    )
    main(
        [
            "build-task",
            "--name",
            "gsm8k",
            "--entry",
            json.dumps({"domain": "arithmetic", "size": 10}),
            "--seed",
            "0",
            "--out",
            str(root / "gsm8k.parquet"),
        ]
    )
    return {p.name: file_hash(p) for p in sorted(root.iterdir())}


def test_data_stages_are_byte_identical_across_runs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = _data_stage(tmp_path / "a"), _data_stage(tmp_path / "b")
    assert len(first) == 5 and first == second
