"""Each default is written once, in codeift.settings: no stage, rule or CLI writes it again.

The defaults are read from the settings' dataclass fields (and the study-wide constants beside
them), never from a hand list, so a new setting is covered the day it is added. A second copy
is a `.get(key, value)` / `.setdefault(key, value)` or a function parameter `key=value` whose
value equals that key's default, anywhere in src/ or workflow/ outside settings.py.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from codeift import settings
from tests.conftest import REPO

SCALARS = (str, int, float, bool)


def settings_defaults() -> dict[str, list[Any]]:
    """Key -> its default value(s) across the settings (scalars only: a copied dict or list
    is not a literal a stage writes)."""
    found: dict[str, list[Any]] = defaultdict(list)
    for cls in settings.SECTIONS.values():
        for field in dataclasses.fields(cls):
            if field.default is not dataclasses.MISSING:
                found[field.name].append(field.default)
    for key, value in settings.STUDY_DEFAULTS.items():
        found[key].append(value)
    found["chat_template"].append(settings.DEFAULT_CHAT_TEMPLATE)
    return {k: [v for v in vs if isinstance(v, SCALARS)] for k, vs in found.items()}


def _same(value: Any, defaults: list[Any]) -> bool:
    # True == 1 in Python: a default and its copy must have the same type as well.
    return any(type(value) is type(d) and value == d for d in defaults)


def python_copies(path: Path, defaults: dict[str, list[Any]]) -> list[str]:
    """`file:line: what` for each second definition of a default in one Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    copies = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "setdefault")
            and len(node.args) == 2
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in defaults
            and isinstance(node.args[1], ast.Constant)
            and _same(node.args[1].value, defaults[node.args[0].value])
        ):
            copies.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            positional = [*arguments.posonlyargs, *arguments.args]
            pairs = [
                *zip(
                    positional[len(positional) - len(arguments.defaults) :],
                    arguments.defaults,
                    strict=True,
                ),
                *(
                    (a, d)
                    for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
                    if d
                ),
            ]
            for argument, default in pairs:
                if (
                    argument.arg in defaults
                    and isinstance(default, ast.Constant)
                    and _same(default.value, defaults[argument.arg])
                ):
                    copies.append(
                        f"{path}:{default.lineno}: {node.name}({argument.arg}="
                        f"{ast.unparse(default)})"
                    )
    return copies


SMK_GET = re.compile(r"""\.(?:get|setdefault)\(\s*["'](\w+)["']\s*,\s*([^()]+?)\s*\)""")


def snakemake_copies(path: Path, defaults: dict[str, list[Any]]) -> list[str]:
    """The same for a Snakemake file (not Python: its `.get` calls are read with a pattern)."""
    copies = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for key, value in SMK_GET.findall(line):
            try:
                literal = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                continue
            if key in defaults and _same(literal, defaults[key]):
                copies.append(f"{path}:{number}: {line.strip()}")
    return copies


def second_definitions(root: Path) -> list[str]:
    defaults = settings_defaults()
    home = root / "src" / "codeift" / "settings.py"
    copies = []
    for path in sorted((root / "src").rglob("*.py")):
        if path != home:
            copies += python_copies(path, defaults)
    for path in [root / "Snakefile", *sorted((root / "workflow").rglob("*.smk"))]:
        copies += snakemake_copies(path, defaults)
    return copies


def test_no_default_is_defined_a_second_time():
    copies = second_definitions(REPO)
    assert not copies, "defaults written outside codeift.settings:\n" + "\n".join(copies)


def test_the_check_finds_a_copied_default(tmp_path):
    """The check itself: each kind of copy, of a key it reads from the settings' fields."""
    (tmp_path / "src").mkdir()
    (tmp_path / "workflow").mkdir()
    (tmp_path / "Snakefile").write_text("")
    (tmp_path / "src" / "stage.py").write_text(
        "def build(pool, nested: bool = True, match='tokens'):\n"
        "    return cleaning.get('html', 'strip'), config.get('seed', 1)\n"
    )
    (tmp_path / "workflow" / "x.smk").write_text('x = spec.get("chat_template", "codeift")\n')
    copies = second_definitions(tmp_path)
    assert [copy.split(": ", 1)[1] for copy in copies] == [
        "build(nested=True)",
        "cleaning.get('html', 'strip')",
        'x = spec.get("chat_template", "codeift")',
    ]
