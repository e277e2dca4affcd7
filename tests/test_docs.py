"""The documentation cannot drift from the code. Every shell command the README, dbt_project/README.md and docs/
show in a fenced block is either run here (cheap ones) or mapped, below, to the test that runs what it does, with
the reason; a new command fails here until it is mapped. Every make target, module (`python -m x`), CLI verb and
option they name, in fenced blocks and in inline code alike, must exist, and every fenced invocation of this
project's command lines must parse with that command's own parser.

What counts as a command: every line of a ```bash, ```sh or ```shell block (comments dropped, `\\` continuations
joined), and the `$ ` lines of any other block (```text: a command with its output). Every fenced block names its
language, so a command cannot hide in an unmarked block."""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import importlib.util
import inspect
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCS = [REPO_ROOT / "README.md", REPO_ROOT / "dbt_project" / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
SHELLS = {"bash", "sh", "shell"}
OUR_PACKAGES = ("platform_assets", "governance")
# Programs a command may start besides make, python -m and this project's `governance`: shell built-ins, and
# tools from the virtual environment or the system that this project does not define.
OTHER_PROGRAMS = {"cd", "sed", "dbt", "dbt-ol", "psql"}


@dataclass(frozen=True)
class Covered:
    """A command shape run by another test: the file must contain `evidence` (what runs it)."""
    test: str
    evidence: str
    reason: str


# Each command shape the docs show (environment prefix, program, module, verbs; see `shape`) and the test that runs
# what it does. Cheap commands are run by this file instead (RUN_HERE).
COVERED = {
    "make demo": Covered("tests/test_ml_no_champion.py", "from platform_assets.demo import main",
                         "the demo's main over a short range (the full period takes tens of minutes); "
                         "conftest.pipeline_run runs the same deliver + materialize_range"),
    "PLATFORM_DATA_DIR=/tmp/other make demo": Covered(
        "tests/test_operations.py", "PLATFORM_WAREHOUSE_LOCK_WAIT_SECONDS",
        "runs beside each other on one data folder and on others (every test uses a data folder of its own)"),
    "make test": Covered(".ci/run", "make test", "the command that runs this suite (CI)"),
    "make dev": Covered("tests/test_ml_backfill.py", "start_daemon, start_run_server, start_webserver",
                        "`make dev` is `dagster dev` (webserver + daemon) over workspace.yaml and the run server: "
                        "all three started there"),
    "make replay": Covered("tests/test_simulator.py", 'simulator_main(["next"', "`make replay` is `simulator next`"),
    "make rollback": Covered("tests/test_ml_lifecycle.py", '"platform_assets.ml", "rollback"',
                             "`make rollback` is `python -m platform_assets.ml rollback`"),
    "python -m platform_assets.ml backtest": Covered(
        "tests/test_ml_lifecycle.py", 'main(["backtest"',
        "the backtest and --rescore over the lifecycle test's two real periods (the full year takes ~27 minutes)"),
    "make team-up": Covered("tests/test_team_servers.py", "import down, status, team_env_file, up",
                            "`make team-up` is `python -m platform_assets.team up` (servers.up)"),
    "make team-status": Covered("tests/test_team_servers.py", "import down, status, team_env_file, up",
                                "`python -m platform_assets.team status` (servers.status)"),
    "make team-down": Covered("tests/test_team_servers.py", "import down, status, team_env_file, up",
                              "`python -m platform_assets.team down` (servers.down)"),
    "make instance": Covered("tests/test_team_settings.py", '"-m", "platform_assets.instance"',
                             "`make instance` is `python -m platform_assets.instance`"),
    "PLATFORM_TARGET=team make dev": Covered("tests/test_team_servers.py", "dagster-daemon",
                                             "a real daemon on the team servers"),
    "PLATFORM_TARGET=team make demo": Covered("tests/test_team_demo.py", "PLATFORM_TARGET",
                                              "the demo's graph on the team target"),
    "python -m platform_assets.demo": Covered("tests/test_ml_no_champion.py", "from platform_assets.demo import main",
                                              "the demo's main over the documented 7 days"),
    "python -m platform_assets.sources check": Covered("tests/test_add_a_source.py", '"platform_assets.sources", "check"',
                                                       "every step of the README's Add a source"),
    "python -m platform_assets.simulator deliver": Covered(
        "tests/test_add_a_source.py", '"platform_assets.simulator", "deliver"',
        "the CLI itself; tests/test_simulator.py checks --defect names and typed values"),
    "PLATFORM_TARGET=team PLATFORM_WAREHOUSE_URL= python -m platform_assets.transformations.dbt_target build": Covered(
        "tests/test_dbt_targets.py", "warehouse_connection_env",
        "the variables dbt_target passes dbt, then a real dbt build on PostgreSQL (a server it starts)"),
    "cd dbt_project && dbt-ol build": Covered("tests/test_dbt_ol.py", "documented_dbt_ol_command",
                                              "runs dbt_project/README.md's two lines as written"),
    "governance token issue": Covered("tests/test_governance_access.py", '"token", "issue"', "the CLI"),
    "governance token list": Covered("tests/test_governance_access.py", '"token", "list"', "the CLI"),
    "governance token revoke": Covered("tests/test_governance_access.py", '"token", "revoke"', "the CLI"),
    "GOVERNANCE_TOKEN= governance query": Covered("tests/test_governance_access.py", "GOVERNANCE_TOKEN",
                                                  "the CLI with the token in the environment"),
    "governance query": Covered("tests/test_governance_access.py", '"query"', "the CLI"),
    "governance access": Covered("tests/test_governance.py", '"access"', "the CLI"),
    "governance audit verify": Covered("tests/test_governance_audit.py", '"audit", "verify"', "the CLI"),
    "governance owner": Covered("tests/test_governance.py", '"owner"', "the CLI"),
    "governance consumers": Covered("tests/test_governance.py", '"consumers"', "the CLI"),
    "governance cost": Covered("tests/test_cost.py", 'main(["--json", "cost"])', "the CLI on a real run's costs"),
    "governance impact": Covered("tests/test_governance.py", '"impact"', "the CLI"),
    "governance validate": Covered("tests/test_governance.py", '"validate"', "the installed command"),
    "governance report": Covered("tests/test_governance.py", '"report"', "the CLI"),
    "governance trace": Covered("tests/test_lineage.py", '"trace"', "on the real pipeline's events"),
    "governance apply": Covered("tests/test_governance_postgres.py", '"apply"', "on a real PostgreSQL"),
    "governance password": Covered("tests/test_governance_postgres.py", '"password"', "on a real PostgreSQL"),
    "psql": Covered("tests/test_governance_postgres.py", "psycopg2.connect",
                    "psql is PostgreSQL's client: the same logins and SQL through psycopg2"),
}
RUN_HERE = {"python -m platform_assets.transformations.dbt_target env",  # test_the_documented_dbt_environment_runs
            "make mlflow"}  # test_make_mlflow_serves_the_platforms_tracking_store_on_localhost


# --- reading the docs ---

def fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, body, line of the opening fence) of every fenced block."""
    blocks, opened = [], None
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if opened is None:
                opened = (line[3:].strip(), number, [])
            else:
                blocks.append((opened[0], "\n".join(opened[2]), opened[1]))
                opened = None
        elif opened is not None:
            opened[2].append(line)
    return blocks


def _without_comment(line: str) -> str:
    return re.sub(r"\s+#\s.*$", "", line).strip()


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) of every fenced command, whitespace collapsed."""
    found = []
    for path in DOCS:
        for language, body, number in fenced_blocks(path.read_text()):
            where = f"{path.relative_to(REPO_ROOT)}:{number}"
            lines = body.replace("\\\n", " ").splitlines()
            if language in SHELLS:
                candidates = [line for line in lines if not line.lstrip().startswith("#")]
            else:
                candidates = [line[2:] for line in lines if line.startswith("$ ")]
            for line in candidates:
                command = " ".join(_without_comment(line).split())
                if command:
                    found.append((where, command))
    return found


def inline_commands() -> list[tuple[str, str]]:
    """Inline code naming a make target, a module or the governance command."""
    found = []
    for path in DOCS:
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
        for span in re.findall(r"`([^`\n]+)`", text):
            if re.match(r"([A-Z_][A-Z0-9_]*=\S+ )*(make |(\.venv/bin/)?python -m |governance )", span):
                found.append((str(path.relative_to(REPO_ROOT)), span))
    return found


# --- what a command is ---

def _words(command: str) -> list[str]:
    # [OPTIONAL] parts of a usage line are checked like the rest
    return [word.strip("[]") for word in shlex.split(command) if word.strip("[]")]


def _environment_prefix(words: list[str]) -> tuple[list[str], list[str]]:
    """(VAR=value words before the program, the rest)."""
    prefix = []
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        prefix.append(words[0])
        words = words[1:]
    return prefix, words


def simple_commands(command: str) -> list[list[str]]:
    """The simple commands of a line, split on && and |; `eval "$(X)"` and `export V=$(X)` stand for X."""
    command = re.sub(r'^eval "\$\((.*)\)"$', r"\1", command.strip())
    command = re.sub(r"^export \w+=\$\((.*)\)$", r"\1", command)
    return [words for words in (_words(part) for part in re.split(r"\s*(?:&&|\|)\s*", command)) if words]


def _module_of(words: list[str]) -> tuple[str, list[str]] | None:
    if len(words) >= 3 and Path(words[0]).name in ("python", "python3") and words[1] == "-m":
        return words[2], words[3:]
    return None


def shape(command: str) -> str:
    """What a command is, for COVERED: its environment prefix (the values of PLATFORM_TARGET and PLATFORM_DATA_DIR,
    which change what runs; the others' names), the program, the module and its verbs; no other arguments.
    Setting a variable and filtering text (export, sed) are not commands of their own."""
    shapes = []
    for words in simple_commands(command):
        prefix, words = _environment_prefix(words)
        if not words or words[0] in ("export", "sed"):
            continue
        kept = [p if p.split("=")[0] in ("PLATFORM_TARGET", "PLATFORM_DATA_DIR") else p.split("=")[0] + "="
                for p in prefix]
        module = _module_of(words)
        if module:
            head = ["python", "-m", module[0], *_verbs(*module)]
        elif words[0] == "make":
            head = ["make", *[w for w in words[1:] if "=" not in w and not w.startswith("-")][:1]]
        elif words[0] == "governance":
            head = ["governance", *_verbs("governance.cli", words[1:])]
        elif words[0] in ("cd", "dbt", "dbt-ol"):
            head = words[:2]
        else:
            head = words[:1]
        shapes.append(" ".join(kept + head))
    return " && ".join(shapes)


# --- the command lines' own parsers ---

class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


_PARSERS: dict[str, argparse.ArgumentParser | None] = {}


def cli_parser(module: str) -> argparse.ArgumentParser | None:
    """The argparse parser a module's main() builds (captured at its parse_args, before it does anything), or None
    for a main without arguments. Only this project's modules: others are not ours to run."""
    if module not in _PARSERS:
        if module == "governance.cli":
            _PARSERS[module] = importlib.import_module(module).build_parser()
            return _PARSERS[module]
        spec = importlib.util.find_spec(module)
        loaded = importlib.import_module(module + ".__main__" if spec.submodule_search_locations else module)
        main = getattr(loaded, "main")
        parser = None
        if inspect.signature(main).parameters:
            original = argparse.ArgumentParser.parse_args

            def capture(self, *args, **kwargs):
                raise _Captured(self)
            argparse.ArgumentParser.parse_args = capture
            try:
                main([])
            except _Captured as captured:
                parser = captured.parser
            finally:
                argparse.ArgumentParser.parse_args = original
        _PARSERS[module] = parser
    return _PARSERS[module]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _verbs(module: str, arguments: list[str]) -> list[str]:
    if module == "platform_assets.transformations.dbt_target":
        return arguments[:1]  # `env`, or the dbt command it runs
    if not module.startswith(OUR_PACKAGES):
        return []
    parser, verbs = cli_parser(module), []
    while parser is not None:
        choices = _subcommands(parser)
        following = [a for a in arguments if not a.startswith("-")][:1]
        if not choices or not following or following[0] not in choices:
            break
        verbs.append(following[0])
        arguments = arguments[arguments.index(following[0]) + 1:]
        parser = choices[following[0]]
    return verbs


@functools.cache
def make_target_exists(target: str) -> bool:
    done = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    return "No rule to make target" not in done.stderr


def problems_of(words: list[str], exact: bool) -> list[str]:
    """What does not exist in one simple command. `exact`: a real example, parsed by the command's own parser;
    otherwise a usage line with placeholders: only its verbs and options are checked."""
    _, words = _environment_prefix(words)
    if not words:
        return []
    program = words[0]
    if program == "export":
        return []
    if program == "make":
        targets = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
        return [f"make target '{target}' does not exist" for target in targets if not make_target_exists(target)]
    if program == "governance":
        return _argument_problems("governance.cli", words[1:], exact)
    module = _module_of(words)
    if module:
        name, arguments = module
        if importlib.util.find_spec(name.split(".")[0]) is None or importlib.util.find_spec(name) is None:
            return [f"module '{name}' does not exist"]
        if name.startswith(OUR_PACKAGES):
            return _argument_problems(name, arguments, exact)
        return []
    if program in OTHER_PROGRAMS:
        if program in ("dbt", "dbt-ol") and not (BIN / program).exists():
            return [f"'{program}' is not installed in the virtual environment"]
        return []
    return [f"'{program}': not a command this check knows (add it to OTHER_PROGRAMS if it is one)"]


def _argument_problems(module: str, arguments: list[str], exact: bool) -> list[str]:
    if module == "platform_assets.transformations.dbt_target":
        return [] if not arguments or arguments[0] in ("env", "build", "run", "test", "parse", "compile", "ls") else [
            f"dbt_target: '{arguments[0]}' is neither `env` nor a dbt command"]
    parser = cli_parser(module)
    if parser is None:
        return [f"{module} takes no arguments, shown with {' '.join(arguments)}"] if arguments else []
    if exact:
        error = io.StringIO()
        with contextlib.redirect_stderr(error), contextlib.redirect_stdout(io.StringIO()):
            try:
                parser.parse_args(arguments)
            except SystemExit as exit_:
                if exit_.code:
                    return [f"{module} {' '.join(arguments)}: {error.getvalue().strip().splitlines()[-1]}"]
        return []
    problems, current = [], parser
    for argument in arguments:
        choices = _subcommands(current)
        if argument.startswith("-"):
            option = argument.split("=")[0]
            if option not in {o for action in current._actions for o in action.option_strings}:
                problems.append(f"{module}: option '{option}' does not exist")
        elif choices and argument in choices:
            current = choices[argument]
        elif choices and argument.islower() and not re.search(r"[/.\"']", argument):
            problems.append(f"{module}: '{argument}' is not one of {', '.join(choices)}")
    return problems


# --- the checks ---

def test_every_fenced_block_names_its_language():
    unnamed = [f"{path.relative_to(REPO_ROOT)}:{number}" for path in DOCS
               for language, _, number in fenced_blocks(path.read_text()) if not language]
    assert unnamed == [], "say what each block is (```bash for commands, ```text for output with $ prompts)"


def test_every_documented_command_is_run_here_or_by_a_mapped_test():
    shapes = {}
    for where, command in documented_commands():
        if shape(command):
            shapes.setdefault(shape(command), []).append(where)
    unmapped = {s: places for s, places in shapes.items() if s not in COVERED and s not in RUN_HERE}
    assert unmapped == {}, "new commands in the docs: run them here (RUN_HERE) or map them to a test (COVERED)"
    stale = sorted((set(COVERED) | RUN_HERE) - set(shapes))
    assert stale == [], "mapped commands no document shows any more: remove them from COVERED / RUN_HERE"


def test_the_mapped_tests_run_what_the_docs_show():
    wrong = {}
    for command, covered in COVERED.items():
        path = REPO_ROOT / covered.test
        if not path.exists() or covered.evidence not in path.read_text():
            wrong[command] = f"{covered.test} does not contain {covered.evidence!r}"
    assert wrong == {}


def test_every_fenced_command_exists_and_parses():
    problems = [f"{where}: {command}: {problem}" for where, command in documented_commands()
                for words in simple_commands(command) for problem in problems_of(words, exact=True)]
    assert problems == []


def test_every_inline_command_names_what_exists():
    problems = [f"{where}: `{span}`: {problem}" for where, span in inline_commands()
                for words in simple_commands(span) for problem in problems_of(words, exact=False)]
    assert problems == []


def test_the_check_catches_what_does_not_exist():
    assert problems_of(_words("make no-such-target"), exact=True) == ["make target 'no-such-target' does not exist"]
    assert problems_of(_words("python -m platform_assets.no_such_module"), exact=True) == [
        "module 'platform_assets.no_such_module' does not exist"]
    assert "not one of" in problems_of(_words("governance tokens issue x"), exact=False)[0]
    assert "does not exist" in problems_of(_words("python -m platform_assets.bench --no-such-option"), exact=False)[0]
    assert problems_of(_words("python -m platform_assets.simulator deliver --start 2013-01-05"), exact=True)
    assert shape("make bench SCALES=1") not in COVERED  # a new command shape is not covered by accident


def test_the_documented_dbt_environment_runs(tmp_path):
    """RUN_HERE: the first line of the dbt-ol command, for real (about 1 s)."""
    link = tmp_path / "link"
    link.symlink_to(tmp_path, target_is_directory=True)
    done = subprocess.run([sys.executable, "-m", "platform_assets.transformations.dbt_target", "env"], cwd=REPO_ROOT,
                          env={**os.environ, "PLATFORM_DATA_DIR": f"{link}/"}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"export PLATFORM_DATA_DIR={tmp_path.resolve()}\n" in done.stdout


def test_make_mlflow_serves_the_platforms_tracking_store_on_localhost(tmp_path):
    """`make mlflow` is not started by the suite (a server on a fixed port): its command line is checked here."""
    from platform_assets.settings import load_settings
    done = subprocess.run(["make", "-n", "--no-print-directory", "mlflow"], cwd=REPO_ROOT, capture_output=True,
                          text=True, env={**os.environ, "PLATFORM_DATA_DIR": str(tmp_path), "PLATFORM_TARGET": "embedded"},
                          timeout=60)
    line = next(line for line in done.stdout.replace("\\\n", " ").splitlines() if "mlflow ui" in line)
    os.environ["PLATFORM_DATA_DIR"], previous = str(tmp_path), os.environ.get("PLATFORM_DATA_DIR")
    try:
        settings = load_settings()
    finally:
        if previous is None:
            os.environ.pop("PLATFORM_DATA_DIR")
        else:
            os.environ["PLATFORM_DATA_DIR"] = previous
    assert "--host 127.0.0.1" in line
    assert f"--backend-store-uri {settings.mlflow_tracking_uri}" in line
    assert f"--default-artifact-root {settings.mlflow_artifact_location}" in line


@pytest.mark.parametrize("path", [p for p in DOCS if p.parent.name == "docs"], ids=lambda p: p.name)
def test_each_page_opens_with_what_a_reader_can_do_there(path):
    opening = " ".join(path.read_text().split("\n\n")[1].split())
    assert opening.startswith("What you can do with this page:"), opening[:80]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_and_anchor_exists():
    broken = []
    for path in DOCS:
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(f"{path.relative_to(REPO_ROOT)}: {target}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in {
                    _anchor(line.lstrip("#")) for line in linked.read_text().splitlines() if line.startswith("#")}:
                broken.append(f"{path.relative_to(REPO_ROOT)}: {target}: no such heading")
    assert broken == []
