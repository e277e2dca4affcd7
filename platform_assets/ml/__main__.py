"""`python -m platform_assets.ml rollback --reason TEXT [--by NAME]`: move the `champion` alias back to the
version it replaced, and record who did it and why (model version tags, <data>/mlflow/champion_history.jsonl).
`python -m platform_assets.ml approve VERSION --by NAME`: sign a version off (NAME: a member of the team owning
ml/delay_model in the governance catalog), so that it may serve once its shadow days are good.
`python -m platform_assets.ml backtest [--start DAY] [--end DAY] [--out DIR]`: the drift backtest (backtest.py)."""

import argparse
import datetime as dt
import getpass
import os
import sys
from pathlib import Path

from platform_assets.ml.registry import HISTORY_FILE, ChampionMove, RegistryError, log_move, rollback
from platform_assets.ml.signoff import SignOffError, approve
from platform_assets.resources import build_resources
from platform_assets.settings import load_settings


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def _backtest(settings, args) -> int:
    from platform_assets.ml.backtest import rescore, run  # noqa: PLC0415
    from platform_assets.ml.policy import load_policy  # noqa: PLC0415

    out = args.out or settings.data_dir / "ml"
    try:
        if args.rescore:
            result = rescore(args.rescore, load_policy().drift, out)
        else:
            with build_resources(settings)["warehouse"].open(read_only=True) as store:
                result = run(store, load_policy().drift, settings.seed, out, args.start, args.end)
    except (ValueError, OSError, RuntimeError, KeyError) as error:  # no features, a locked warehouse, a bad JSON
        print(f"error: drift backtest: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    print(result["markdown"], end="")
    print(f"written: {out}/drift_backtest.md and drift_backtest.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.ml", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    undo = commands.add_parser("rollback", help="move champion back to the previous champion version")
    undo.add_argument("--reason", required=True, help="why (recorded with the move)")
    undo.add_argument("--by", default=_user(), help="who (default: the OS user)")
    replay = commands.add_parser("backtest", help="calibrate the drift thresholds on the published flights")
    replay.add_argument("--start", type=dt.date.fromisoformat, help="first data day (default: the first published)")
    replay.add_argument("--end", type=dt.date.fromisoformat, help="last data day (default: the last published)")
    replay.add_argument("--out", type=Path, help="folder of drift_backtest.md/.json (default: <data>/ml)")
    replay.add_argument("--rescore", type=Path, help="an earlier drift_backtest.json: score its days again, no training")
    sign = commands.add_parser("approve", help="sign off a model version so that it may serve")
    sign.add_argument("version", help="the registered model version")
    sign.add_argument("--by", required=True, help="a member (name or e-mail) of the owning team")
    args = parser.parse_args(argv)

    settings = load_settings()
    if args.command == "backtest":
        return _backtest(settings, args)
    store = settings.mlflow_dir / "mlflow.db"
    if not store.exists():
        print(f"error: no MLflow store at {store}: materialize ml/delay_model first", file=sys.stderr)
        return 1
    mlflow = build_resources(settings)["mlflow"]
    mlflow.configure()
    import mlflow as mlflow_client  # noqa: PLC0415

    client, name, history = mlflow_client.MlflowClient(), mlflow.registered_model_name, settings.mlflow_dir / HISTORY_FILE
    try:
        if args.command == "approve":
            approval = approve(client, name, args.version, args.by)
            move = log_move(history, ChampionMove(name, "approved", None, args.version, approval["by"], "sign-off",
                                              approval["at"]))
        else:
            move = rollback(client, name, args.by, args.reason, history)
    except (RegistryError, SignOffError, mlflow_client.MlflowException) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    print(move.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
