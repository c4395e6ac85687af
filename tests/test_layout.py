"""The tree is the data flow: which stage may import which, no import cycle, and a layout
block (docs/design.md) that names every subpackage and top-level module of src/codeift."""

from __future__ import annotations

import ast
import graphlib
import importlib
import re
from pathlib import Path

import pytest

from tests.conftest import REPO, expand_braces

SRC = REPO / "src"
PACKAGE = "codeift"

# Who may import whom, as data. A module belongs to the first group its dotted name (below
# `codeift.`) starts with; it may import its own group and the groups or single modules listed.
# errors, io, study (the vocabulary), numbers (how a number is read and written), words (the
# generators' word lists), settings and layout (where each rule's files go under `results`) are
# the foundation every stage shares. No stage imports config: stages receive their typed
# settings from the CLI. cli is the composition root.
FOUNDATION = {"errors", "io", "study", "numbers", "words", "settings", "layout"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "io": set(),
    "study": {"errors"},
    "numbers": set(),
    "words": set(),
    "settings": {"errors"},
    "layout": set(),
    "resources": {"errors", "settings", "retries"},
    # retries grow what failed within the site's caps: pure functions of requests and settings
    "retries": {"errors", "settings", "layout"},
    # the GPU-hour plan reads the config's views and prices them with the models' FLOPs and
    # memory estimates
    "plan": FOUNDATION | {"config", "models", "resources", "tasks"},
    # submissions and scheduling priorities (a stable hash of the model's name)
    "cluster": {"io"},
    # the study benchmark reads a finished run's logs and outputs, never a stage's code; it
    # counts model FLOPs as the throughput sweep does (models.flops)
    "bench": {"errors", "models.flops"},
    # hub artifacts (listing, download, offline resolution): below every stage that loads one
    "hub": {"errors", "io"},
    "score": FOUNDATION,
    # answer types (study) and gold numbers (numbers) come from the foundation, never the scorer
    "tasks": FOUNDATION | {"hub"},
    # the LLM judge labeller uses the one vLLM builder (infer.engines), never generation or the
    # engine server (an upstream edge: UPSTREAM_EDGES)
    "data": FOUNDATION | {"infer.engines", "hub"},
    # the tiny tokenizer and the pretraining corpus are built from the small world's generator
    "models": FOUNDATION | {"data.small_world", "hub"},
    "train": FOUNDATION,
    # generation loads a backbone (models.backbones) and a task file (tasks)
    "infer": FOUNDATION | {"models", "tasks"},
    # the reasoning modes read the scorer's text view (score.answer_text), the one definition of
    # what a response says outside its program source
    "analysis": FOUNDATION | {"score.answer_text"},
    # validation asks each stage whether a setting is valid (a sandbox mode, a task, a request)
    "config": FOUNDATION | {"resources", "retries", "models.memory", "score.jail", "tasks"},
    # the GPU smoke test's config: the real study's, reduced and validated (scripts/gpu_smoke.sh)
    "gpu_smoke": {"errors", "config"},
    "cli": {"*"},
    "__main__": {"cli"},
}

# The stages in data-flow order: a stage may import an earlier one, never a later one (the
# workflow runs them in this order, and a later stage's code changes more often).
STAGES = ("data", "models", "train", "tasks", "infer", "score", "analysis")
# Imports from an earlier stage into a later one that exist today, each with why and what would
# end it. An upstream edge not listed fails.
UPSTREAM_EDGES: dict[tuple[str, str], str] = {
    (
        "codeift.data.judge",
        "codeift.infer.engines",
    ): "the LLM judge labeller builds its engine with the one vLLM builder; moving build_vllm "
    "below the stages (with its test hooks, issue 27 item 6) would end it",
}

# Import cycles that exist today, each with why and what would end it. A cycle not listed fails.
# (The jail's probe moved into score.sandbox, which ended the last one.)
KNOWN_CYCLE_EDGES: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every codeift module `name` imports, at top level or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # `from codeift.score import jail` imports the module codeift.score.jail
            found |= {
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            }
    return {target for target in found if target.split(".")[0] == PACKAGE} - {name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _group(module: str) -> str | None:
    rest = module.removeprefix(f"{PACKAGE}.")
    return next((g for g in ALLOWED if rest == g or rest.startswith(f"{g}.")), None)


def _allowed(source: str, target: str) -> bool:
    group, rest = _group(source), target.removeprefix(f"{PACKAGE}.")
    if target == PACKAGE or _group(target) == group:
        return True
    return any(
        entry == "*" or rest == entry or rest.startswith(f"{entry}.") for entry in ALLOWED[group]
    )


def test_every_module_belongs_to_a_group_of_the_import_rules():
    ungrouped = sorted(m for m in MODULES if m != PACKAGE and _group(m) is None)
    assert not ungrouped, f"modules with no entry in ALLOWED (tests/test_layout.py): {ungrouped}"


def test_imports_follow_the_stage_direction():
    wrong = sorted(
        f"{source} imports {target}"
        for source, targets in GRAPH.items()
        if _group(source)
        for target in targets
        if not _allowed(source, target)
    )
    assert not wrong, "imports against ALLOWED (tests/test_layout.py):\n" + "\n".join(wrong)


def test_import_rules_catch_a_wrong_edge():
    """The rule table is not vacuous: the edges the stage direction forbids are refused."""
    assert not _allowed("codeift.infer.generate", "codeift.train.sft")
    assert not _allowed("codeift.analysis.tables", "codeift.models.backbones")
    assert not _allowed("codeift.data.mix", "codeift.infer.generate")
    assert not _allowed("codeift.score.answers", "codeift.tasks.catalog")
    assert not _allowed("codeift.train.sft", "codeift.config")
    assert _allowed("codeift.data.judge", "codeift.infer.engines")
    assert _allowed("codeift.cli", "codeift.train.sft")


def _stage(module: str) -> int | None:
    """The position in STAGES of a module's stage; None outside the stages."""
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else None


def _upstream(source: str, target: str) -> bool:
    """Whether `source` sits in an earlier stage than `target`, which it imports."""
    earlier, later = _stage(source), _stage(target)
    return earlier is not None and later is not None and earlier < later


def test_no_stage_imports_a_later_stage_beyond_the_known_edges():
    for edge in UPSTREAM_EDGES:
        assert edge[1] in GRAPH[edge[0]], f"{edge[0]} no longer imports {edge[1]}: drop the entry"
    wrong = sorted(
        f"{source} imports {target}"
        for source, targets in GRAPH.items()
        for target in targets
        if _upstream(source, target) and (source, target) not in UPSTREAM_EDGES
    )
    assert not wrong, "upstream imports against STAGES (tests/test_layout.py):\n" + "\n".join(wrong)


def test_stage_order_catches_an_upstream_edge():
    """The order is not vacuous: tasks importing the scorer is upstream, the reverse is not."""
    assert _upstream("codeift.tasks.catalog", "codeift.score.answers")
    assert _upstream("codeift.data.mix", "codeift.analysis.tables")
    assert not _upstream("codeift.score.answers", "codeift.tasks.catalog")
    assert not _upstream("codeift.tasks.catalog", "codeift.study")
    assert not _allowed("codeift.tasks.catalog", "codeift.score.answers")


def _errors_imported(module: str) -> set[str]:
    """The names `module` imports from codeift.errors: the stage errors it raises or catches."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    return {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == f"{PACKAGE}.errors"
        for alias in node.names
    } - {"CodeiftError"}


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_declares_its_public_api_and_errors(stage):
    """Every stage package has an `__all__` whose names resolve, and it exports each stage error
    its modules use (codeift.errors holds them all: tests/test_cli.py)."""
    package = importlib.import_module(f"{PACKAGE}.{stage}")
    public = getattr(package, "__all__", None)
    assert public, f"codeift.{stage} declares no __all__"
    unresolved = [name for name in public if not hasattr(package, name)]
    assert not unresolved, f"codeift.{stage}.__all__ names {unresolved}, which do not resolve"
    used = set().union(*(_errors_imported(m) for m in MODULES if _stage(m) == STAGES.index(stage)))
    assert used <= set(public), f"codeift.{stage}.__all__ lacks its errors {used - set(public)}"


def test_no_import_cycle_beyond_the_known_ones():
    for source, target in KNOWN_CYCLE_EDGES:
        assert target in GRAPH[source], f"{source} no longer imports {target}: drop the entry"
    graph = {
        name: {t for t in targets if (name, t) not in KNOWN_CYCLE_EDGES}
        for name, targets in GRAPH.items()
    }
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_import_graph_sees_function_local_and_relative_imports(tmp_path):
    """The parser finds what the rules need: imports inside functions, `from pkg import mod`."""
    module = tmp_path / "codeift" / "score" / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from codeift.score import jail\n"
        "def f():\n    from .sandbox import run_program\n    import codeift.io\n"
    )
    assert _imports("codeift.score.x", module) == {
        "codeift.score.jail",
        "codeift.score.sandbox",
        "codeift.io",
    }


# ------------------------------------------------------------------- docs/design.md layout


def _readme_layout() -> list[str]:
    readme = (REPO / "docs" / "design.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```\n(.*?)```", section, re.S).group(1).splitlines()


_expand = expand_braces


def _layout_entries(lines: list[str]) -> tuple[set[str], list[str]]:
    """(package paths listed under src/codeift/, relative to it; every other path listed)."""
    package, others, folder = set(), [], None
    for line in lines:
        if not line.strip():
            continue
        name = line.split()[0].rstrip(",")
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:
            folder = "" if name == f"src/{PACKAGE}/" else None
            if folder is None:
                others.extend(_expand(name))
        elif folder is not None:
            if indent == 2:
                folder = name if name.endswith("/") else ""
                package.add(name)
            else:
                package.add(folder + name)
    return package, others


def _package_tree() -> set[str]:
    """Every folder of src/codeift (`data/`, `schemas/`) and every module in it or its
    subpackages, package markers (__init__.py) aside."""
    root = SRC / PACKAGE
    folders = {f"{p.name}/" for p in root.iterdir() if p.is_dir() and p.name != "__pycache__"}
    modules = {str(p.relative_to(root)) for p in root.rglob("*.py") if p.name != "__init__.py"}
    return folders | modules


def test_readme_layout_lists_every_subpackage_and_module():
    listed, _ = _layout_entries(_readme_layout())
    missing = sorted(_package_tree() - listed)
    stale = sorted(name for name in listed if not (SRC / PACKAGE / name).exists())
    assert not missing, f"docs/design.md '## Layout' does not list src/codeift/{missing}"
    assert not stale, f"docs/design.md '## Layout' lists src/codeift/{stale}, which do not exist"


def test_readme_layout_names_only_paths_that_exist():
    _, others = _layout_entries(_readme_layout())
    missing = [path for path in others if not list(REPO.glob(path.rstrip("/")))]
    assert not missing, f"docs/design.md '## Layout' names {missing}, which do not exist"


def test_layout_parser_reads_the_tree_shape():
    lines = [
        "Snakefile                rules",
        "workflow/{a,b}.smk       two",
        "src/codeift/             the package",
        "  cli.py                 entry",
        "  data/                  stage",
        "    mix.py               one mix",
        "  io.py                  files",
        "tests/                   pytest",
    ]
    package, others = _layout_entries(lines)
    assert package == {"cli.py", "data/", "data/mix.py", "io.py"}
    assert others == ["Snakefile", "workflow/a.smk", "workflow/b.smk", "tests/"]


# ------------------------------------------------------------- tests/ mirrors the stage folders

TESTS = REPO / "tests"
# The test modules that stay at the top of tests/, beside conftest.py, each with why: their
# subject is a top-level module of src/codeift (which sits at the package's top for the same
# reason), several stages at once, or the whole repository. A test of one stage's modules goes
# in tests/<stage>/ instead, the folder named after that stage's package.
CROSS_STAGE_TESTS: dict[str, str] = {
    "test_attacks_config.py": "codeift.config: every stage's keys refused at validation, and by "
    "Snakemake before any job",
    "test_bench.py": "codeift.bench: a run's Snakemake log, generation logs and model FLOPs",
    "test_cli.py": "codeift.cli: every stage's command and error",
    "test_compare_results.py": "scripts/compare_results.py: two results folders, every stage's "
    "outputs",
    "test_config.py": "codeift.config: the arms, variants and settings of every stage",
    "test_defaults.py": "each default written once across src/ and workflow/",
    "test_determinism.py": "the data and task stages through the CLI, byte for byte",
    "test_docs.py": "README, docs/, the schema, the envs and code comments against the tree",
    "test_envs.py": "each rule's conda env (workflow/envs) against what its stage imports",
    "test_gpu_smoke.py": "codeift.gpu_smoke: the real study reduced and validated",
    "test_layout.py": "the import rules between the stages, and this layout",
    "test_lint.py": "ruff, snakefmt and snakemake --lint over the repository",
    "test_plan.py": "codeift.plan: GPU hours of training and generation",
    "test_prefetch.py": "codeift.hub and the prefetch of what every stage loads",
    "test_real_models.py": "end to end on a real model (Snakemake, slow)",
    "test_report.py": "end to end, then snakemake --report (slow)",
    "test_resources.py": "codeift.resources: each rule's cluster request",
    "test_results_layout.py": "codeift.layout: the paths the rules and the stages share",
    "test_retries.py": "codeift.retries: requests grown on retry within the site's caps",
    "test_settings.py": "codeift.settings: the typed settings of every stage against the schema",
    "test_site_profile.py": "the SLURM profile's sbatch lines for every rule",
    "test_slurm.py": "end to end on a loopback SLURM cluster (slow)",
    "test_workflow.py": "end to end through Snakemake (slow)",
}


def _misplaced_tests(tests: Path, src: Path, stages: tuple[str, ...]) -> list[str]:
    """What breaks the tests/ layout: a folder of test modules that is not a stage package of
    src/codeift or is not itself a package (its modules would import under their bare names), a
    test module at the top that CROSS_STAGE_TESTS does not list or a listed one that is gone,
    and two test modules of one file name (conftest.test_group groups by it)."""
    wrong = []
    for folder in sorted(p for p in tests.iterdir() if p.is_dir() and any(p.glob("test_*.py"))):
        if folder.name not in stages or not (src / folder.name / "__init__.py").is_file():
            wrong.append(f"tests/{folder.name}/ is not a stage package of src/{PACKAGE}")
        if not (folder / "__init__.py").is_file():
            wrong.append(f"tests/{folder.name}/ has no __init__.py")
    top = {p.name for p in tests.glob("test_*.py")}
    wrong += [
        f"tests/{name} is not listed in CROSS_STAGE_TESTS"
        for name in sorted(top)
        if name not in CROSS_STAGE_TESTS
    ]
    wrong += [
        f"CROSS_STAGE_TESTS lists tests/{name}, which is gone: drop the entry"
        for name in sorted(set(CROSS_STAGE_TESTS) - top)
    ]
    names = sorted(p.name for p in tests.rglob("test_*.py"))
    wrong += [
        f"two test modules named {name}" for name in sorted(set(names)) if names.count(name) > 1
    ]
    return wrong


def test_tests_mirror_the_stage_folders():
    wrong = _misplaced_tests(TESTS, SRC / PACKAGE, STAGES)
    assert not wrong, "tests/ layout (tests/test_layout.py, CROSS_STAGE_TESTS):\n" + "\n".join(
        wrong
    )


def test_tests_layout_check_catches_a_misplaced_module(tmp_path):
    """The check is not vacuous: on a small tree it names each kind of misplacement."""
    src, tests = tmp_path / "src", tmp_path / "tests"
    (src / "score").mkdir(parents=True)
    (src / "score" / "__init__.py").touch()
    for path in ("score/__init__.py", "score/test_a.py", "helpers/test_b.py", "test_a.py"):
        (tests / path).parent.mkdir(parents=True, exist_ok=True)
        (tests / path).touch()
    for name in CROSS_STAGE_TESTS:
        (tests / name).touch()
    (tests / "test_cli.py").unlink()
    assert _misplaced_tests(tests, src, ("score",)) == [
        f"tests/helpers/ is not a stage package of src/{PACKAGE}",
        "tests/helpers/ has no __init__.py",
        "tests/test_a.py is not listed in CROSS_STAGE_TESTS",
        "CROSS_STAGE_TESTS lists tests/test_cli.py, which is gone: drop the entry",
        "two test modules named test_a.py",
    ]
    (tests / "helpers" / "test_b.py").unlink()
    (tests / "test_a.py").unlink()
    (tests / "test_cli.py").touch()
    assert _misplaced_tests(tests, src, ("score",)) == []
