"""The dbt target of the deployment: dbt_project/profiles.yml picks its output from PLATFORM_TARGET; the `embedded`
output reads the data folder from PLATFORM_DATA_DIR, which must be absolute and resolved (as Settings.data_dir is)
so that dbt-ol names the warehouse's tables exactly as the platform's lineage does; the `team` output reads the
PostgreSQL connection from variables derived here from PLATFORM_WAREHOUSE_URL (one setting for the platform, dbt
and a person alike).

    python -m platform_assets.transformations.dbt_target build --select flights   dbt with the deployment's target
    eval "$(python -m platform_assets.transformations.dbt_target env)"            the same variables in this shell,
                                                                                   for dbt or dbt-ol by hand
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from platform_assets.settings import DBT_PROJECT_DIR, Settings, SettingsError, load_settings

URL_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# dbt hides the values of DBT_ENV_SECRET_* variables in its logs and artifacts.
PASSWORD_VARIABLE = "DBT_ENV_SECRET_WAREHOUSE_PASSWORD"
PARSE_STATE = "partial_parse.msgpack"


def parse_state(data_dir: Path) -> Path:
    """The parse state the next dbt invocation on this data folder starts from (transformations/dbt_assets.py)."""
    return Path(data_dir) / "dbt" / PARSE_STATE


def _url_error(reason: str) -> SettingsError:
    # Never the URL itself: it may hold a password.
    return SettingsError(f"PLATFORM_WAREHOUSE_URL: {reason}")


def warehouse_connection_env(url: str | None) -> dict[str, str]:
    """The team output's variables from a `postgresql://user[:password]@host[:port]/database[?sslmode=...]` URL.
    Raises SettingsError naming what is missing or not understood."""
    if not url:
        raise _url_error("not set; the team target needs the warehouse as postgresql://user@host:port/database")
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        raise _url_error(f"scheme '{parts.scheme}' is not one of {', '.join(URL_SCHEMES)}")
    try:
        port = parts.port or 5432
    except ValueError:
        raise _url_error("the port is not a number from 1 to 65535") from None
    database = unquote(parts.path.removeprefix("/"))
    for value, what in ((parts.hostname, "host"), (parts.username, "user name"), (database, "database name")):
        if not value:
            raise _url_error(f"no {what} (postgresql://user@host:port/database)")
    if "/" in database:
        raise _url_error(f"database name '{database}' contains '/'")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"sslmode"})
    if unknown:
        raise _url_error(f"unsupported parameter(s) {', '.join(unknown)} (only sslmode)")
    sslmode = query.get("sslmode", ["prefer"])[-1]
    if sslmode not in SSL_MODES:
        raise _url_error(f"sslmode '{sslmode}' is not one of {', '.join(SSL_MODES)}")
    return {
        "PLATFORM_WAREHOUSE_HOST": parts.hostname,
        "PLATFORM_WAREHOUSE_PORT": str(port),
        "PLATFORM_WAREHOUSE_USER": unquote(parts.username),
        "PLATFORM_WAREHOUSE_DB": database,
        "PLATFORM_WAREHOUSE_SSLMODE": sslmode,
        PASSWORD_VARIABLE: unquote(parts.password or ""),
    }


def dbt_target_env(settings: Settings) -> dict[str, str]:
    """What dbt's profile reads for the deployment: the target and the data folder as the platform resolved it
    (dbt-ol names a DuckDB table `duckdb://<the profile's path>`: a relative path, a trailing slash or a symlink
    would name other datasets than the platform's lineage) and, on `team`, the warehouse connection."""
    env = {"PLATFORM_TARGET": settings.target, "PLATFORM_DATA_DIR": str(settings.data_dir.resolve())}
    if settings.target == "team":
        env.update(warehouse_connection_env(settings.warehouse_url))
    return env


def shell_exports(env: dict[str, str]) -> str:
    """`export NAME=value` lines a POSIX shell can `eval`."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in sorted(env.items()))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        target_env = dbt_target_env(load_settings())
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if argv == ["env"]:
        # For dbt or dbt-ol run by hand: eval "$(python -m platform_assets.transformations.dbt_target env)"
        sys.stdout.write(shell_exports(target_env))
        return 0
    dbt = os.path.join(os.path.dirname(sys.executable), "dbt")
    env = {**os.environ, **target_env, "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR)}
    return subprocess.run([dbt, *argv], cwd=DBT_PROJECT_DIR, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
