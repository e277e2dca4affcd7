"""A warm process for the runs of this machine: it imports, once, the libraries a run's steps use (Dagster, dbt and
its DuckDB adapter, pandas, scikit-learn, skops, MLflow), then forks a process for each run handed to it.

A run launched through the code server starts a new interpreter (multiprocessing "spawn"): about 7 s of imports
before and during its steps, and 2-3 s of interpreter shutdown after them (docs/benchmark.md). A forked run starts
with the libraries loaded and, once its events are stored, leaves as a forked worker does (atexit handlers, then
os._exit, without tearing the interpreter down).

Before it takes runs, it warms dbt up once (`warm_up`): the per-process caches a first dbt invocation fills are then
filled for every run. The platform's own code is not preloaded: each run imports `platform_assets` and loads its job
after the fork (about 0.6 s), so an edited definition, catalog or dbt manifest is what the run uses, as through the
code server. A library upgrade needs the server restarted.

`python -m platform_assets.run_server` (`make dev` starts it beside Dagster). It listens on 127.0.0.1 on a free port
and writes the port and a random token to $PLATFORM_DATA_DIR/run_server.json, readable by this user only. The
instance's run launcher (platform_assets/run_launcher.py) hands each run to it, and launches through the code server
as before when no server answers. A request names a run of the server's own Dagster instance, with the token.
"""

from __future__ import annotations

import atexit
import gc
import hmac
import importlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

# What a run's steps import, in this order. SciPy first: skops computes its trusted SciPy functions at import by
# searching every loaded module in import order for each one, about 2 s when SciPy comes after the four thousand
# modules the rest loads and 0.1 s when it comes first. A library missing here is imported by each run that uses it.
PRELOAD = ("scipy.special", "numpy", "pandas", "pyarrow", "sklearn.pipeline", "skops.io", "matplotlib.figure",
           "matplotlib.backends.backend_agg", "mlflow", "mlflow.sklearn", "mlflow.store.tracking.sqlalchemy_store",
           "mlflow.store.model_registry.sqlalchemy_store", "pandera.pandas", "openlineage.client", "duckdb", "dagster",
           "dagster._core.storage.sqlite_storage", "dagster._core.storage.event_log.sqlite", "dagster_dbt",
           "dbt.cli.main", "dbt.adapters.duckdb")
SERVER_FILE = "run_server.json"
WARM_UP_VARIABLE = "PLATFORM_RUN_SERVER_WARM_UP"  # "0": no dbt warm-up (set when it left threads behind)
REQUEST_BYTES = 4096
ACCEPT_SECONDS = 1.0  # how often the server looks for runs that have ended while it waits for requests


class RunServerError(Exception):
    """The server refused a request: the reason names what was wrong with it."""


def server_file(data_dir: Path) -> Path:
    return Path(data_dir) / SERVER_FILE


def server_running(data_dir: Path) -> bool:
    """Whether the process the data folder's server file names is a run server that still runs (a server that was
    killed leaves its file behind)."""
    import psutil  # noqa: PLC0415

    try:
        pid = int(json.loads(server_file(data_dir).read_text())["pid"])
        return "platform_assets.run_server" in psutil.Process(pid).cmdline()
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return False


def preload() -> None:
    for module in PRELOAD:
        importlib.import_module(module)


def threads_left_by(work) -> int:
    """How many more threads this process has after `work()` than before (native ones included)."""
    import psutil  # noqa: PLC0415

    before = psutil.Process().num_threads()
    work()
    return max(0, psutil.Process().num_threads() - before)


def warm_up(data_dir: Path) -> None:
    """Pay here, once, what a process pays on its first dbt invocation and every run's process paid again (about
    1.4 s of a launched day's 8.7 s, docs/benchmark.md): dbt's JSON schemas of the project and profile classes and
    mashumaro's (de)serializers of the manifest's nodes, built on first use and cached for the process; and
    inspect's table of modules by file, which dbt's behavior flags fill by searching all four thousand loaded
    modules. One `dbt ls` of the project from the data folder's parse state, into a scratch folder (it reads the
    profile, not the warehouse), without dbt's static parser: that one starts a pool of native threads (Rust's
    rayon), and a forked run that parsed a model then waited forever for the pool's workers. A failure is reported
    and changes nothing: the runs then pay these costs themselves. The platform's own modules it imports are
    dropped afterwards, so that each run imports them anew."""
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from dbt.cli.main import dbtRunner  # noqa: PLC0415

    from platform_assets.settings import DBT_PROJECT_DIR, load_settings  # noqa: PLC0415
    from platform_assets.transformations.dbt_target import dbt_target_env, parse_state  # noqa: PLC0415
    from platform_assets.transformations.in_process import close_duckdb, set_environment  # noqa: PLC0415

    started = time.monotonic()
    restore = None
    try:
        with tempfile.TemporaryDirectory(prefix="run-server-dbt-") as scratch:
            if (state := parse_state(data_dir)).exists():
                shutil.copyfile(state, Path(scratch) / state.name)
            restore = set_environment(dbt_target_env(load_settings()))
            result = dbtRunner().invoke(["--log-level", "none", "--log-level-file", "none", "--log-path", scratch,
                                         "--no-static-parser", "ls",
                                         "--project-dir", str(DBT_PROJECT_DIR),
                                         "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", scratch])
        outcome = "done" if result.success else f"failed ({result.exception or 'dbt ls failed'})"
    except Exception as error:  # noqa: BLE001  (a warm-up: the runs work without it)
        outcome = f"failed ({type(error).__name__}: {error})"
    finally:
        close_duckdb()  # `ls` opens no warehouse; were it to, the server would hold the file for its whole life
        if restore is not None:
            restore()
        for name in [name for name in sys.modules if name == "platform_assets" or name.startswith("platform_assets.")]:
            if name != __name__:
                del sys.modules[name]
    print(f"run server: dbt warm-up {outcome} in {time.monotonic() - started:.1f} s", flush=True)


def serve(data_dir: Path, dagster_home: Path) -> None:
    """Accept runs until SIGTERM or SIGINT. Each request is one JSON line, {"token", "run_id", "dagster_home"};
    the answer is {"pid"} of the run's process, or {"error"}."""
    preload()
    if os.environ.get(WARM_UP_VARIABLE) != "0":
        if left := threads_left_by(lambda: warm_up(data_dir)):
            # A forked run has none of the server's threads: a library that started a pool (dbt's Rust parser does,
            # under --static-parser) would wait forever on workers that do not exist in the run's process.
            print(f"run server: the dbt warm-up left {left} thread(s) running that a forked run would not have; "
                  "starting again without it", flush=True)
            os.execve(sys.executable, [sys.executable, "-m", "platform_assets.run_server"],
                      {**os.environ, WARM_UP_VARIABLE: "0"})
    gc.collect()
    gc.freeze()  # what was preloaded is shared with every run: their collections do not walk it again
    token = secrets.token_urlsafe(32)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(ACCEPT_SECONDS)
    path = server_file(data_dir)
    _write_private(path, {"port": listener.getsockname()[1], "token": token, "pid": os.getpid()})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"run server: pid {os.getpid()}, 127.0.0.1:{listener.getsockname()[1]}, instance {dagster_home}",
          flush=True)
    try:
        while True:
            _reap()
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(10)
                try:
                    answer = {"pid": _handle(connection, token, dagster_home, listener)}
                except RunServerError as error:
                    answer = {"error": str(error)}
                try:
                    connection.sendall(json.dumps(answer).encode() + b"\n")
                except OSError:
                    pass  # the launcher gave up waiting: the run started anyway and reports to its event log
    except KeyboardInterrupt:
        pass
    finally:
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass
        listener.close()
        gc.unfreeze()


def _write_private(path: Path, content: dict) -> None:
    """Replace `path` atomically with `content`, created readable and writable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(content, out)
    os.replace(partial, path)


def _reap() -> None:
    """Collect the exit status of every run process that has ended (they are this process's children)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _read_line(connection: socket.socket) -> bytes:
    """One line, requests and answers alike: at most REQUEST_BYTES."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = connection.recv(REQUEST_BYTES)
        if not chunk:
            break
        line += chunk
        if len(line) > REQUEST_BYTES:
            raise RunServerError(f"a request is one JSON line of at most {REQUEST_BYTES} bytes")
    return line


def _handle(connection: socket.socket, token: str, dagster_home: Path, listener: socket.socket) -> int:
    try:
        fields = json.loads(_read_line(connection))
    except ValueError as error:
        raise RunServerError(f"the request is not JSON: {error}") from None
    if not isinstance(fields, dict) or not all(isinstance(fields.get(key), str)
                                               for key in ("token", "run_id", "dagster_home")):
        raise RunServerError("a request names token, run_id and dagster_home, each a string")
    if not hmac.compare_digest(fields["token"].encode(), token.encode()):
        raise RunServerError(f"wrong token: the token is in {SERVER_FILE} in the server's data folder")
    if Path(fields["dagster_home"]).resolve() != dagster_home.resolve():
        raise RunServerError(f"this server runs the runs of the instance in {dagster_home}, not "
                             f"{fields['dagster_home']}")
    pid = os.fork()
    if pid == 0:
        listener.close()
        connection.close()
        _run_and_exit(fields["run_id"])
    return pid


def _run_and_exit(run_id: str) -> None:
    """In the forked process: execute the run as Dagster's code server does in a run's process, then exit."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # terminating the run interrupts it
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        code = _execute(run_id)
    except BaseException:  # noqa: BLE001  (whatever happens, this process must not return into the server's loop)
        traceback.print_exc()
    finally:
        try:
            gc.collect()  # finalize what the run left in reference cycles (open files flush)
            atexit._run_exitfuncs()  # noqa: SLF001  (what an interpreter's exit runs: logging, lineage, MLflow)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _execute(run_id: str) -> int:
    import dagster as dg  # noqa: PLC0415
    from dagster._core.events import EngineEventData  # noqa: PLC0415
    from dagster._grpc.impl import core_execute_run  # noqa: PLC0415
    from dagster._utils.hosted_user_process import recon_job_from_origin  # noqa: PLC0415

    pid = os.getpid()
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        if run is None:
            print(f"run server: no run {run_id} in the instance in {os.environ.get('DAGSTER_HOME')}", file=sys.stderr)
            return 1
        instance.report_engine_event(f"Started process for run (pid: {pid}) on the run server (pid: {os.getppid()}).",
                                     run, EngineEventData.in_process(pid))
        try:
            # Loads the job (reporting it and failing the run if it does not load), then executes the run.
            for _ in core_execute_run(recon_job_from_origin(run.job_code_origin), run, instance, inject_env_vars=False):
                pass
        except BaseException:
            if not instance.get_run_by_id(run_id).is_finished:
                instance.report_run_failed(run, f"The run's process on the run server failed:\n{traceback.format_exc()}")
            raise
        finally:
            instance.report_engine_event(f"Process for run exited (pid: {pid}).", run)
        run = instance.get_run_by_id(run_id)
        return 0 if run is not None and run.status == dg.DagsterRunStatus.SUCCESS else 1


def start(env: dict[str, str], log: Path, startup_seconds: float = 300) -> subprocess.Popen:
    """Start `python -m platform_assets.run_server` with `env` (output to `log`) and return it once it takes runs:
    when the data folder's server file names this process, not a file an earlier server left behind."""
    from platform_assets.settings import REPO_ROOT  # noqa: PLC0415

    path = server_file(Path(env["PLATFORM_DATA_DIR"]))
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "platform_assets.run_server"], env=env, cwd=REPO_ROOT,
                                   stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + startup_seconds
    while True:
        try:
            if json.loads(path.read_text()).get("pid") == process.pid:
                return process
        except (OSError, ValueError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.terminate()
            process.wait(60)
            raise RuntimeError(f"the run server did not start within {startup_seconds:g} s, see {log}:\n"
                               f"{log.read_text()[-3000:]}")
        time.sleep(0.2)


def hand_over(data_dir: Path, dagster_home: Path, run_id: str, timeout: float = 10.0) -> int:
    """Hand `run_id` to the run server of `data_dir`; returns the pid of the run's process. Raises OSError when no
    server answers (no file, or nothing listening: a server that stopped) and RunServerError when it refused."""
    path = server_file(data_dir)
    try:
        server = json.loads(path.read_text())
        address, token = ("127.0.0.1", int(server["port"])), str(server["token"])
    except (ValueError, KeyError, TypeError) as error:
        raise RunServerError(f"{path} is not a run server's file: {error}") from None
    request = {"token": token, "run_id": run_id, "dagster_home": str(dagster_home)}
    with socket.create_connection(address, timeout=timeout) as connection:
        connection.sendall(json.dumps(request).encode() + b"\n")
        answer = _read_line(connection)
    try:
        reply = json.loads(answer)
    except ValueError:
        raise RunServerError(f"the run server at 127.0.0.1:{address[1]} gave no answer") from None
    if "error" in reply:
        raise RunServerError(reply["error"])
    return int(reply["pid"])


def main() -> int:
    from platform_assets.settings import load_settings  # noqa: PLC0415  (no Dagster import: preload's order)

    settings = load_settings()
    dagster_home = os.environ.get("DAGSTER_HOME")
    if not dagster_home:
        print("run server: DAGSTER_HOME is not set (make dev sets it to the data folder's dagster_home)",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    print(f"run server: loading the run libraries ({', '.join(PRELOAD)})", flush=True)
    serve(settings.data_dir, Path(dagster_home))
    print(f"run server: stopped after {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
