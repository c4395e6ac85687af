"""The hub sources of the task catalogue: pinned, at their standard sizes, loaded offline.

No network: a local folder laid out like huggingface_hub's cache stands in for the hub, with
HF_HUB_OFFLINE on and socket connections refused, so these tests also show that a job whose
files were prefetched never reaches for the network.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codeift.tasks import TaskError, build_task_frame, load_catalog, resolve_task
from codeift.tasks import hub as hub_module

# The standard test-set sizes: GSM8K (Cobbe et al. 2021), SVAMP (Patel et al. 2021), MultiArith,
# AddSub and last-letter concatenation as Wei et al. (2022) and Kojima et al. (2022) used them,
# bAbI en-valid (1,000 per task), CLUTRR's card for gen_train234_test2to10, ProofWriter's card.
STANDARD_ROWS = {
    "gsm8k": 1319,
    "svamp": 1000,
    "multiarith": 600,
    "addsub": 395,
    "last_letter_concat": 500,
    "babi_deduction": 1000,
    "babi_induction": 1000,
    "clutrr": 1048,
    "proofwriter": 174476,
}
# Sources whose row count was not found (docs/tasks-sources.md says why).
UNCOUNTED = {"coin_flip"}
# Sources for which no commit sha was found, pinned to a branch instead.
BRANCH_PINNED = {"babi_deduction", "babi_induction", "proofwriter"}
SHA = re.compile(r"[0-9a-f]{40}")


def hub_sources() -> dict[str, dict]:
    return {name: spec["hub"] for name, spec in load_catalog().items() if spec["hub"]}


def test_every_hub_source_is_pinned_cited_and_counted():
    sources = hub_sources()
    assert set(sources) == set(STANDARD_ROWS) | UNCOUNTED
    for name, hub in sources.items():
        assert hub["files"] and all(isinstance(f, str) for f in hub["files"]), name
        assert len(hub["source_notes"]) > 100, name
        if name in BRANCH_PINNED:
            assert hub["revision"] == "main", name
            assert re.search(r"NOT FOUND: (a|the full) commit sha", hub["source_notes"]), name
        else:
            assert SHA.fullmatch(hub["revision"]), name
            assert hub["revision"] in hub["source_notes"], name
        if name in UNCOUNTED:
            assert hub["rows"] is None and "NOT FOUND" in hub["source_notes"]
        else:
            assert hub["rows"] == STANDARD_ROWS[name], name
        assert hub["columns"] and set(hub["fields"].values()) <= set(hub["columns"]), name


def test_resplit_sources_read_every_part_of_the_standard_set():
    sources = hub_sources()
    assert sources["multiarith"]["files"] == [
        "default/train/0000.parquet",
        "default/test/0000.parquet",
    ]
    assert sources["last_letter_concat"]["files"] == ["train.json", "test.json"]
    assert [Path(f).parent.name for f in sources["addsub"]["files"]] == [
        "train",
        "validation",
        "test",
    ]
    assert sources["coin_flip"]["files"] == ["test.json"]  # not test_ood.json
    assert sources["svamp"]["id"] != "ChilleD/SVAMP"  # a 700/300 re-split


def test_clutrr_reads_the_parquet_export_not_the_loading_script():
    clutrr = hub_sources()["clutrr"]
    assert all(f.endswith(".parquet") for f in clutrr["files"])
    assert clutrr["files"] == ["gen_train234_test2to10/test/0000.parquet"]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"files": None}, "hub.files"),
        ({"files": "test.json"}, "hub.files"),
        ({"files": [""]}, "hub.files"),
        ({"revision": None}, "hub.revision"),
        ({"rows": 0}, "hub.rows"),
        ({"rows": "600"}, "hub.rows"),
        ({"columns": "question"}, "hub.columns"),
    ],
)
def test_bad_hub_pins_fail_at_resolve_time_naming_the_key(override, field):
    entry = {"domain": "arithmetic", "source": "hub", "spec": {"hub": override}}
    with pytest.raises(TaskError, match=rf"'multiarith', field '{re.escape(field)}'"):
        resolve_task("multiarith", entry)


# --- the count check ---------------------------------------------------------------------------


def test_a_build_whose_count_differs_names_the_task_and_both_counts(monkeypatch):
    rows = [{"question": f"q{i}", "final_ans": str(i)} for i in range(180)]  # the test split only
    monkeypatch.setattr(hub_module, "load_hub_rows", lambda hub: rows)
    with pytest.raises(TaskError, match=r"task 'multiarith', field 'hub.rows'.*180 rows.*600"):
        build_task_frame("multiarith", {"domain": "arithmetic", "source": "hub"}, 0)
    full = rows + [{"question": f"p{i}", "final_ans": str(i)} for i in range(420)]
    monkeypatch.setattr(hub_module, "load_hub_rows", lambda hub: full)
    frame = build_task_frame("multiarith", {"domain": "arithmetic", "source": "hub"}, 0)
    assert frame.height == 600


def test_rows_without_a_catalogued_column_are_refused(monkeypatch):
    rows = [{"question": "q", "answer": "1"}] * 600  # `answer`, not MultiArith's `final_ans`
    monkeypatch.setattr(hub_module, "load_hub_rows", lambda hub: rows)
    with pytest.raises(TaskError, match=r"'multiarith', field 'hub.columns'.*final_ans"):
        build_task_frame("multiarith", {"domain": "arithmetic", "source": "hub"}, 0)


# --- reading files as the hub lays them out, offline -------------------------------------------


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """A huggingface_hub cache folder, offline mode on, and any socket connection refused."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def refuse(*args, **kwargs):
        raise AssertionError(f"network call attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return cache


def put(cache: Path, repo: str, revision: str, files: dict[str, object], branch: str = "") -> None:
    """Lay files out as a snapshot of `repo` at `revision` (a ref file when `branch` names one)."""
    repo_dir = cache / f"datasets--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    for name, content in files.items():
        path = snapshot / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".parquet"):
            pq.write_table(pa.Table.from_pylist(content), path)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
    if branch:
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / branch).write_text(revision)


def test_multiarith_concatenates_both_parquet_parts_from_the_cache(offline_hub):
    hub = hub_sources()["multiarith"]
    train = [{"question": f"Train {i}?", "final_ans": str(i)} for i in range(4)]
    test = [{"question": f"Test {i}?", "final_ans": str(10 + i)} for i in range(2)]
    put(
        offline_hub,
        hub["id"],
        hub["revision"],
        {"default/train/0000.parquet": train, "default/test/0000.parquet": test},
    )
    assert hub_module.load_hub_rows(hub) == train + test
    entry = {"domain": "arithmetic", "source": "hub", "spec": {"hub": {"rows": 6}}}
    frame = build_task_frame("multiarith", entry, 0)
    assert sorted(frame["answer"].to_list(), key=int) == ["0", "1", "2", "3", "10", "11"]
    assert set(frame["source"]) == {"hub:ChilleD/MultiArith:train+test"}
    with pytest.raises(TaskError, match=r"'multiarith'.*has 6 rows, the catalogue expects 600"):
        build_task_frame("multiarith", {"domain": "arithmetic", "source": "hub"}, 0)


def test_parquet_loads_only_the_columns_a_task_reads(tmp_path):
    path = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist([{"theory": "t", "allProofs": "long", "QDep": 3}]), path)
    assert hub_module.read_rows(path, {"theory", "QDep", "id"}) == [{"theory": "t", "QDep": 3}]
    assert hub_module.read_rows(path) == [{"theory": "t", "allProofs": "long", "QDep": 3}]


def test_clutrr_parquet_rows_become_questions(offline_hub):
    hub = hub_sources()["clutrr"]
    row = {
        "id": "c-1",
        "story": "[Clarence]'s granddaughter, [Emily], was busy helping her brother, [Michael].",
        "query": "('Clarence', 'Michael')",
        "target": 5,
        "target_text": "grandson",
        "clean_story": "",
        "proof_state": "",
        "task_name": "task_1.3",
    }
    put(offline_hub, hub["id"], hub["revision"], {hub["files"][0]: [row]})
    entry = {"domain": "logical", "source": "hub", "spec": {"hub": {"rows": 1}}}
    (record,) = build_task_frame("clutrr", entry, 0).to_dicts()
    assert record["answer"] == "grandson"
    assert record["question"] == (
        "Clarence's granddaughter, Emily, was busy helping her brother, Michael.\n"
        "How is Michael related to Clarence?"
    )


def test_babi_pattern_picks_its_own_subset_on_a_branch_pinned_source(offline_hub):
    hub = hub_sources()["babi_deduction"]
    row = {"passage": "Sheep are afraid of wolves.\nGertrude is a sheep.",
           "question": "What is Gertrude afraid of?", "answer": "wolf", "task": 15}  # fmt: skip
    other = {**row, "answer": "cat"}
    put(
        offline_hub,
        hub["id"],
        "f" * 40,
        {
            "task_15-basic_deduction/test-00000-of-00001.parquet": [row],
            "task_15-basic_deduction/train-00000-of-00001.parquet": [other],
            "task_16-basic_induction/test-00000-of-00001.parquet": [other],
        },
        branch="main",
    )
    # Only the subset's test file is read, and only the columns the task uses.
    assert hub_module.load_hub_rows(hub) == [{k: v for k, v in row.items() if k != "task"}]


def test_json_files_in_every_shape_the_json_loader_accepts(tmp_path):
    rows = [{"question": "q1", "answer": "a"}, {"question": "q2", "answer": "b"}]
    shapes = {
        "list.json": json.dumps(rows),
        "lines.json": "\n".join(json.dumps(r) for r in rows),
        "wrapped.json": json.dumps({"data": rows}),
        "columns.json": json.dumps({"question": ["q1", "q2"], "answer": ["a", "b"]}),
        "lines.jsonl": "\n".join(json.dumps(r) for r in rows) + "\n",
        "table.csv": "question,answer\nq1,a\nq2,b\n",
    }
    for name, text in shapes.items():
        (tmp_path / name).write_text(text)
        assert hub_module.read_rows(tmp_path / name) == rows, name
    (tmp_path / "odd.json").write_text(json.dumps({"n": 3}))
    with pytest.raises(ValueError, match="odd.json"):
        hub_module.read_rows(tmp_path / "odd.json")
    (tmp_path / "scalars.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="row 0 is not an object"):
        hub_module.read_rows(tmp_path / "scalars.json")


def test_last_letter_json_parts_from_the_cache(offline_hub):
    hub = hub_sources()["last_letter_concat"]
    train = [{"question": 'Take the last letters of "Ab Cd".', "answer": "bd"}]
    test = [{"question": 'Take the last letters of "Ef Gh".', "answer": "fh"}]
    put(offline_hub, hub["id"], hub["revision"], {"train.json": train, "test.json": test})
    assert hub_module.load_hub_rows(hub) == train + test


def test_missing_download_offline_names_the_source_and_the_prefetch_command(offline_hub):
    entry = {"domain": "arithmetic", "source": "hub"}
    with pytest.raises(TaskError) as raised:
        build_task_frame("gsm8k", entry, 0)
    message = str(raised.value)
    assert "task 'gsm8k'" in message and "openai/gsm8k@e53f048856ff" in message
    assert "python -m codeift prefetch" in message


def test_a_snapshot_missing_one_part_fails_rather_than_shrinking_the_set(offline_hub):
    hub = hub_sources()["multiarith"]
    put(offline_hub, hub["id"], hub["revision"], {"default/test/0000.parquet": [{"q": 1}]})
    with pytest.raises(TaskError, match=r"'multiarith'.*default/train/0000.parquet.*prefetch"):
        build_task_frame("multiarith", {"domain": "arithmetic", "source": "hub"}, 0)
