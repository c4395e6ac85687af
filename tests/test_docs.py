"""The docs point at things that exist.

The README is the front door and docs/ holds one page per question, so text moves between pages,
and modules and paths are renamed under it. A pointer that no longer resolves sends a reader to
nothing. Everything here is read from the files themselves (no hand list of links, names or
pages), so a new page, link or name is checked the day it is written:

- every relative link in README.md and docs/**/*.md resolves to a file, and its #anchor to a
  heading of that file;
- every dotted `codeift.*` name in the docs, the config schema, the conda envs and the comments
  and docstrings under src/ is a module or an attribute of one (importlib + getattr);
- every repository path they name (`src/...`, `docs/...`, `tests/x.py::test_y`, ...) exists;
- every (page, "Section") pointer, anywhere in the repository's text, names a heading of that page.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import io
import json
import re
import tokenize
from pathlib import Path

import pytest
import yaml

from codeift import settings as settings_module
from tests.conftest import expand_braces

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "codeift"

# ------------------------------------------------------------------------------------ sources


def markdown_files(repo: Path = REPO) -> list[Path]:
    """The README and every docs page (measurement records under docs/bench included)."""
    return [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]


def code_text(path: Path) -> str:
    """A Python file's comments and docstrings: what a reader takes as prose about the code."""
    source = path.read_text(encoding="utf-8")
    parts = [
        tok.string
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                parts.append(doc)
    return "\n".join(parts)


@functools.cache
def prose_sources(repo: Path = REPO) -> dict[Path, str]:
    """Where names and paths are written for readers: docs, schema, envs, src comments."""
    texts = {path: path.read_text(encoding="utf-8") for path in markdown_files(repo)}
    schema = repo / "src" / "codeift" / "schemas" / "config.schema.yaml"
    texts[schema] = schema.read_text(encoding="utf-8")
    for env in sorted((repo / "workflow" / "envs").glob("*.yaml")):
        texts[env] = env.read_text(encoding="utf-8")
    for module in sorted((repo / "src" / "codeift").rglob("*.py")):
        texts[module] = code_text(module)
    return texts


POINTER_ROOTS = ("src", "workflow", "config", "tests", "scripts", "profiles", ".test", "docs")
POINTER_FILES = ("README.md", "Makefile", "Snakefile", "pyproject.toml")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".smk", ".sh", ".toml", ".rst", ".txt", ""}


def pointer_sources(repo: Path = REPO) -> dict[Path, str]:
    """Every text file a (page, "Section") pointer may sit in: code strings count too (an error
    message that points a user to a section)."""
    paths = [repo / name for name in POINTER_FILES if (repo / name).is_file()]
    for root in POINTER_ROOTS:
        paths += [
            p
            for p in sorted((repo / root).rglob("*"))
            if p.is_file()
            and not p.is_symlink()
            and p.suffix in TEXT_SUFFIXES
            and "__pycache__" not in p.parts
            and p != Path(__file__).resolve()  # its own examples of broken pointers
        ]
    texts = {}
    for path in paths:
        try:
            texts[path] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


# ----------------------------------------------------------------------------------- headings

FENCE = re.compile(r"^\s*(```|~~~)")


def outside_fences(text: str) -> list[str]:
    """The lines of a Markdown text that are not inside a fenced code block."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def plain(heading: str) -> str:
    """A heading as a reader quotes it: without link syntax, emphasis or backticks."""
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return heading.replace("`", "").replace("**", "").strip()


def headings(path: Path) -> list[str]:
    return [
        plain(match.group(1))
        for line in outside_fences(path.read_text(encoding="utf-8"))
        if (match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line))
    ]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a page; a repeated heading gets -1, -2 as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for heading in headings(path):
        slug = anchor(heading)
        count = seen.get(slug, 0)
        out.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return out


# -------------------------------------------------------------------------------------- links

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def broken_links(path: Path) -> list[str]:
    """Relative links of one Markdown file whose file or #anchor does not exist."""
    broken = []
    for line in outside_fences(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, fragment = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            if not resolved.exists():
                broken.append(f"{target} (no such file)")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                broken.append(f"{target} (no heading with anchor #{fragment})")
    return broken


# -------------------------------------------------------------------------------------- names

NAME = re.compile(r"(?<![\w/.-])codeift(?:\.[A-Za-z_]\w*)+")
FILE_ENDINGS = (".py", ".yaml", ".yml", ".json", ".md", ".jinja", ".txt")


def dotted_names(text: str) -> set[str]:
    return {name for name in NAME.findall(text) if not name.endswith(FILE_ENDINGS)}


def resolves(name: str) -> bool:
    """A module, or an attribute (chain) of the longest module prefix of the name."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        if cut == len(parts):
            return True
        obj = importlib.import_module(module_name)
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


# -------------------------------------------------------------------------------------- paths

PATH = re.compile(
    r"(?<![\w/.<>$~-])((?:src|config|docs|workflow|scripts|tests|profiles|constraints|\.test|\.ci)"
    r"/[\w./{},*@+:-]*)"
)


expand = expand_braces


def repository_paths(text: str) -> set[str]:
    """Paths a text names as existing: a command's output (`--out STEM`) is not one."""
    out = set()
    for raw in PATH.findall(re.sub(r"--out\s+\S+", "", text)):
        path = raw.rstrip(".,:;")
        if "{" in path and "}" not in path:  # a brace list cut by the line end
            continue
        out.add(path)
    return out


def missing_path(mention: str, repo: Path = REPO) -> str | None:
    """Why a mentioned path does not exist (None when it does). `file::test` names a test."""
    for path in expand(mention):
        file_part, _, test = path.partition("::")
        matches = list(repo.glob(file_part.rstrip("/"))) if file_part.rstrip("/") else [repo]
        if not matches:
            return f"{path}: no such path"
        if test:
            name = test.split("::")[-1].split("[")[0]
            defined = rf"^\s*(async\s+)?def {re.escape(name)}\("
            if not re.search(defined, matches[0].read_text(encoding="utf-8"), re.M):
                return f"{path}: no test {name} in {file_part}"
    return None


# ----------------------------------------------------------------------------------- pointers

POINTER = re.compile(
    r"(?P<page>\bREADME(?:\.md)?|(?<![\w/.-])(?:[\w.-]+/)*[\w.-]+\.md)(?:'s)?,?:?\s+"
    r"(?P<quote>[\"'])(?P<section>[A-Z][^\"'\n]*?)(?P=quote)"
)


def joined(text: str) -> str:
    """Text with comment line breaks and implicit string concatenation undone, so that a
    pointer split over two lines (`(README, "Real` / `# pretrained LMs")`) reads as one."""
    text = re.sub(r"\n[ \t]*(#|//)[ \t]*", " ", text)
    return re.sub(r"([\"'])[ \t]*\n[ \t]*\1", "", text)


def pointers(text: str) -> list[tuple[str, str]]:
    return [(m.group("page"), m.group("section").strip()) for m in POINTER.finditer(joined(text))]


def pointed_page(page: str, source: Path, repo: Path = REPO) -> Path | None:
    """`README` is the front door; `docs/x.md` is from the root; `x.md` from the source's folder
    or docs/."""
    if page in ("README", "README.md"):
        return repo / "README.md"
    for base in (repo, source.parent, repo / "docs"):
        if (base / page).is_file():
            return base / page
    return None


def names_a_heading(section: str, page: Path) -> bool:
    """The section is a heading, or the start of one (pointers shorten long headings)."""
    wanted = plain(section).lower()
    return any(h.lower().startswith(wanted) for h in headings(page))


# ------------------------------------------------------------------------- the config reference

CONFIGURATION = REPO / "docs" / "configuration.md"


def shown(value: object) -> str:
    """A default as the reference shows it: JSON, or the settings constant that holds it."""
    if value is None:
        return "unset"
    if isinstance(value, str) and len(value) > 60:
        for name, constant in vars(settings_module).items():
            if name.isupper() and constant == value:
                return f"`codeift.settings.{name}`"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value)}`"


def settings_rows(section: str) -> list[str]:
    """The reference's table rows of one settings section: key, default, help (settings.py)."""
    cls = settings_module.SECTIONS[section]
    helps = cls.help()
    return [
        f"| `{section}.{key}` | {shown(value)} | {helps[key]} |"
        for key, value in cls.defaults().items()
    ]


def schema_keys() -> list[str]:
    """Every top-level key of the config schema, and the keys of its plain objects (`ift.total`)."""
    schema = yaml.safe_load((SRC / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))
    keys = []
    for key, spec in schema["properties"].items():
        keys.append(key)
        keys += [f"{key}.{sub}" for sub in spec.get("properties", {})]
    return keys


# -------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(path):
    assert not broken_links(path), f"{path.relative_to(REPO)}: broken links {broken_links(path)}"


def test_every_dotted_codeift_name_resolves():
    stale = sorted(
        f"{path.relative_to(REPO)}: {name}"
        for path, text in prose_sources().items()
        for name in dotted_names(text)
        if not resolves(name)
    )
    assert not stale, "neither a module nor an attribute of one:\n" + "\n".join(stale)


def test_every_repository_path_mentioned_exists():
    missing = sorted(
        f"{path.relative_to(REPO)}: {why}"
        for path, text in prose_sources().items()
        for mention in repository_paths(text)
        if (why := missing_path(mention))
    )
    assert not missing, "paths that the repository does not hold:\n" + "\n".join(missing)


def test_every_section_pointer_names_a_heading():
    stale = []
    for path, text in pointer_sources().items():
        for page, section in pointers(text):
            target = pointed_page(page, path)
            if target is None:
                stale.append(f"{path.relative_to(REPO)}: ({page}, {section!r}): no page {page}")
            elif not names_a_heading(section, target):
                stale.append(
                    f"{path.relative_to(REPO)}: ({page}, {section!r}): "
                    f"{target.relative_to(REPO)} has no such heading"
                )
    assert not stale, "pointers to sections that do not exist:\n" + "\n".join(sorted(stale))


# The checkers on a small repository of their own: each finds what is wrong, and only that.


@pytest.fixture
def tiny_repo(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# Front\n\n## The `small` world\n\n[ok](docs/a.md#where-it-is) [bad](docs/b.md)"
        " [bad anchor](docs/a.md#nowhere) [web](https://example.org/x.md)\n"
        "```\n[in a fence](docs/none.md)\n```\n",
        encoding="utf-8",
    )
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## Where it is\n", encoding="utf-8")
    return tmp_path


def test_links_checker_finds_a_missing_file_and_a_missing_anchor(tiny_repo):
    assert broken_links(tiny_repo / "README.md") == [
        "docs/b.md (no such file)",
        "docs/a.md#nowhere (no heading with anchor #nowhere)",
    ]


def test_pointers_are_read_across_comment_lines_and_checked_against_headings(tiny_repo):
    text = '# see (README, "The small\n# world") and docs/a.md, "Where" and (README, "Gone")'
    found = pointers(text)
    assert found == [("README", "The small world"), ("docs/a.md", "Where"), ("README", "Gone")]
    verdicts = [
        names_a_heading(section, pointed_page(page, tiny_repo / "x.py", tiny_repo))
        for page, section in found
    ]
    assert verdicts == [True, True, False]


def test_names_resolve_through_modules_and_attributes():
    assert resolves("codeift.settings.AnalysisSettings")
    assert resolves("codeift.settings")
    assert not resolves("codeift.analysis.stats.NoSuchThing")
    assert not resolves("codeift.no_such_module")


def test_paths_expand_braces_and_check_named_tests(tiny_repo):
    (tiny_repo / "tests").mkdir()
    (tiny_repo / "tests" / "test_x.py").write_text("def test_y():\n    pass\n", encoding="utf-8")
    assert missing_path("docs/{a,b}.md", tiny_repo) == "docs/b.md: no such path"
    assert missing_path("tests/test_x.py::test_y", tiny_repo) is None
    assert missing_path("tests/test_x.py::test_z", tiny_repo) == (
        "tests/test_x.py::test_z: no test test_z in tests/test_x.py"
    )


@pytest.mark.parametrize("section", sorted(settings_module.SECTIONS))
def test_the_config_reference_shows_every_setting_with_its_default(section):
    """The defaults live in settings.py; the reference shows each with its help, so a changed or
    new default fails here until docs/configuration.md shows it."""
    text = CONFIGURATION.read_text(encoding="utf-8")
    missing = [row for row in settings_rows(section) if row not in text]
    assert not missing, "docs/configuration.md lacks these rows:\n" + "\n".join(missing)


def test_the_config_reference_names_every_schema_key():
    text = CONFIGURATION.read_text(encoding="utf-8")
    missing = [key for key in schema_keys() if f"`{key}" not in text]
    assert not missing, f"docs/configuration.md does not describe {missing}"


def test_the_docs_index_links_every_page():
    """docs/README.md is where a reader finds a page: a page it does not link is lost."""
    index = REPO / "docs" / "README.md"
    linked = {
        (index.parent / target.partition("#")[0]).resolve()
        for target in LINK.findall(index.read_text(encoding="utf-8"))
    }
    pages = [*(REPO / "docs").glob("*.md"), *(REPO / "docs").glob("*/README.md")]
    linked.add(index.resolve())
    unlinked = sorted(str(p.relative_to(REPO)) for p in pages if p.resolve() not in linked)
    assert not unlinked, f"docs/README.md does not link {unlinked}"
