"""dbt in the step's own process (dbt's Python API, `dbtRunner`) instead of a new process per invocation.

A dbt process costs about 5 s before its first model: the interpreter, importing dbt-core and the adapter, loading
the project. The step process has all of that imported already (dagster-dbt imports dbt-core), so one invocation
run here starts in well under a second (docs/benchmark.md). Everything else stays dagster-dbt's: the command line
it builds (selection, flags, the environment), the event stream, the artifacts and the errors. Only the process
behind its `DbtCliInvocation` is replaced, by `InProcessDbt`, which offers what dagster-dbt reads of a
`subprocess.Popen`: `args`, `stdout` (dbt's JSON log lines, from dbt's event callback), `wait()`, `returncode`
and `send_signal()`.

One invocation at a time per process (dbt's flags and event manager are process-wide); the environment dagster-dbt
would give the child is set on this process for the invocation's length and restored afterwards. dbt-duckdb keeps
its DuckDB database open in a class attribute between invocations; it is closed at the end of each one, so the
warehouse file is free for the step's own connections and for other processes, as after a dbt process exits.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache

import orjson

_ONE_AT_A_TIME = threading.Lock()  # one dbt invocation per process, for its whole run
_ONE_CLI_CALL = threading.Lock()  # one swap of dagster-dbt's invocation class at a time
_END = object()
# What dbt writes to stdout at its default log level: the events dagster-dbt turns into Dagster events and logs.
_STREAMED_LEVELS = {"info", "warn", "error"}


class InProcessDbt:
    """One dbt invocation on a thread of this process, behind the part of subprocess.Popen's interface that
    dagster-dbt's DbtCliInvocation uses."""

    def __init__(self, args: Sequence[str], env: dict[str, str]) -> None:
        self.args = list(args)
        self.returncode: int | None = None
        self.stdout = _Lines()
        self._done = threading.Event()
        _ONE_AT_A_TIME.acquire()
        try:
            # Events reach us by callback, not on stdout; dbt.log keeps its default level (it follows stdout's).
            self._restore = set_environment({"DBT_LOG_LEVEL_FILE": "debug", **env, "DBT_LOG_LEVEL": "none"})
            threading.Thread(target=self._run, name="dbt", daemon=True).start()
        except BaseException:
            _ONE_AT_A_TIME.release()
            raise

    def _run(self) -> None:
        from dbt.cli.main import dbtRunner  # noqa: PLC0415  (imported already wherever dagster-dbt is)
        from dbt_common.events.functions import msg_to_dict  # noqa: PLC0415

        def forward(message) -> None:
            if message.info.level in _STREAMED_LEVELS:
                self.stdout.put(orjson.dumps(msg_to_dict(message)))

        try:
            result = dbtRunner(callbacks=[forward]).invoke(self.args[1:])  # args[0] is the dbt executable
            if result.exception is not None:
                self.stdout.put(_error_line(f"dbt failed: {result.exception}"))
            self.returncode = 0 if result.success else (1 if result.exception is None else 2)
        except BaseException as error:  # noqa: BLE001  (reported as dbt's failure, as a process's crash would be)
            self.stdout.put(_error_line(f"dbt crashed: {type(error).__name__}: {error}"))
            self.returncode = 2
        finally:
            close_duckdb()
            self._restore()
            _ONE_AT_A_TIME.release()
            self._done.set()
            self.stdout.put(_END)

    def wait(self, timeout: float | None = None) -> int | None:
        self._done.wait(timeout)
        return self.returncode

    def send_signal(self, signal_number: int) -> None:
        """An interrupted step: dbt has no cancel in its API; the run's process ends and the thread with it."""


class _Lines:
    """dbt's events as the JSON lines a dbt process writes with DBT_LOG_FORMAT=json."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.closed = False

    def put(self, line) -> None:
        self._queue.put(line)

    def __iter__(self) -> Iterator[bytes]:
        while not self.closed:
            line = self._queue.get()
            if line is _END:
                self.closed = True
                return
            yield line

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc) -> None:
        return None


def _error_line(message: str) -> bytes:
    return orjson.dumps({"info": {"name": "InProcessDbtError", "level": "error", "msg": message,
                                  "invocation_id": ""}, "data": {}})


def set_environment(env: dict[str, str]):
    """`env` on this process; the returned function puts back what these variables were before."""
    before = {name: os.environ.get(name) for name in env}
    os.environ.update(env)

    def restore() -> None:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    return restore


def close_duckdb() -> None:
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager  # noqa: PLC0415
    except ImportError:  # another adapter (team: dbt-postgres closes its connections itself)
        return
    with DuckDBConnectionManager._LOCK:
        environment, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if environment is not None:
        environment.close()


@contextmanager
def dbt_in_process() -> Iterator[None]:
    """Within it, dagster-dbt's `DbtCliResource.cli` runs dbt in this process: its module's DbtCliInvocation,
    whose `run` starts the dbt process, is InProcessDbtCliInvocation for that long (tests/test_dbt_in_process.py
    fails if dagster-dbt stops building its invocations there)."""
    from dagster_dbt.core import resource  # noqa: PLC0415

    with _ONE_CLI_CALL:
        original, resource.DbtCliInvocation = resource.DbtCliInvocation, _invocation_class()
        try:
            yield
        finally:
            resource.DbtCliInvocation = original


@cache
def _invocation_class() -> type:
    from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation  # noqa: PLC0415

    class InProcessDbtCliInvocation(DbtCliInvocation):
        """dagster-dbt's invocation with dbt run by InProcessDbt. The parse state is seeded by the caller
        (transformations/dbt_assets.py dbt_target_path), not from the project's target folder."""

        @classmethod
        def run(cls, args, env, manifest, dagster_dbt_translator, project_dir, target_path, raise_on_error,
                context, adapter, cli_version, dbt_project=None):
            return cls(process=InProcessDbt(args, env), manifest=manifest, project=dbt_project,
                       dagster_dbt_translator=dagster_dbt_translator, project_dir=project_dir,
                       target_path=target_path, raise_on_error=raise_on_error, context=context, adapter=adapter,
                       cli_version=cli_version)

    return InProcessDbtCliInvocation
