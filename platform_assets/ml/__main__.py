"""`python -m platform_assets.ml rollback --reason TEXT [--by NAME]`: move the `champion` alias back to the
version it replaced, and record who did it and why (model version tags, <data>/mlflow/champion_history.jsonl)."""

import argparse
import getpass
import os
import sys

from platform_assets.ml.registry import HISTORY_FILE, RegistryError, rollback
from platform_assets.resources import build_resources
from platform_assets.settings import load_settings


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.ml", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    undo = commands.add_parser("rollback", help="move champion back to the previous champion version")
    undo.add_argument("--reason", required=True, help="why (recorded with the move)")
    undo.add_argument("--by", default=_user(), help="who (default: the OS user)")
    args = parser.parse_args(argv)

    settings = load_settings()
    store = settings.mlflow_dir / "mlflow.db"
    if not store.exists():
        print(f"error: no MLflow store at {store}: materialize ml/delay_model first", file=sys.stderr)
        return 1
    mlflow = build_resources(settings)["mlflow"]
    mlflow.configure()
    import mlflow as mlflow_client  # noqa: PLC0415

    try:
        move = rollback(mlflow_client.MlflowClient(), mlflow.registered_model_name, args.by, args.reason,
                        settings.mlflow_dir / HISTORY_FILE)
    except (RegistryError, mlflow_client.MlflowException) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    print(move.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
