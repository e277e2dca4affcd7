"""`governance` command line: questions a data owner asks of the catalog, and the governed query entry point.

Each verb has one subparser, a handler returning a JSON-able answer and, where a table reads better than
`key value` lines, a text renderer. Errors are one line on stderr and exit status 1."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from pathlib import Path

from governance.access import AccessDenied, audit_unanswered, governed_query, rotate_masking_secret
from governance.audit import verify_audit_log
from governance.catalog import CatalogError, load_catalog
from governance.check_status import latest_check_status
from governance.cost import CostStoreError, read_costs, sparkline, summarize
from governance.graph import load_asset_graph, load_manifest
from governance.identity import DEFAULT_DAYS, IdentityError, issue_token, list_tokens, revoke_token
from governance.impact import impact
from governance.lineage import LineageError, events_path, load_events, render, trace
from governance.model_cards import cards_by_dataset
from governance.paths import CATALOG_DIR, DBT_EXPOSURES, lineage_dir, mlflow_artifacts_dir, warehouse_path
from governance.policy import access_matrix
from governance.postgres import PASSWORD_DAYS, ApplyError, apply_catalog, issue_password
from governance.report import render_report
from governance.validate import validate


class UsageError(Exception):
    """The command line does not fit the parser; one line instead of argparse's usage text and exit."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(self.prog, message)


class Failed(Exception):
    """The command ran and its answer is a failure (validate found problems): print it, exit 1."""

    def __init__(self, answer: dict):
        super().__init__("failed")
        self.answer = answer


def _catalog(args: argparse.Namespace):
    return load_catalog(Path(args.catalog))


def _owner(args: argparse.Namespace) -> dict:
    catalog = _catalog(args)
    dataset = catalog.dataset(args.dataset)
    team = catalog.teams[dataset.owner]
    sla = dataset.freshness_sla
    return {"dataset": catalog.dataset_key(args.dataset), "owner": f"team:{dataset.owner}", "contact": team.contact,
            "on_call": team.on_call, "steward": dataset.steward, "domain": dataset.domain,
            "classification": dataset.classification, "lifecycle": dataset.lifecycle.status,
            "freshness_sla": f"warn after {sla.warn_after_hours} h, fail after {sla.fail_after_hours} h" if sla else None}


def _consumers(args: argparse.Namespace) -> dict:
    catalog = _catalog(args)
    key = catalog.dataset_key(args.dataset)
    return {"dataset": key, "consumers": [
        {"consumer": name, "kind": consumer.kind, "criticality": consumer.criticality,
         "owner": f"team:{consumer.owner}", "contact": consumer.contact,
         "on_call": catalog.teams[consumer.owner].on_call, "columns": consumer.depends_on[key]}
        for name, consumer in catalog.consumers_of(key).items()]}


def _consumers_text(answer: dict) -> str:
    lines = [f"{len(answer['consumers'])} consumer(s) of {answer['dataset']}"]
    for c in answer["consumers"]:
        lines.append(f"  {c['consumer']} ({c['kind']}, {c['criticality']}) {c['owner']} {c['contact']}, "
                     f"on call {c['on_call']}")
        lines.append(f"    reads {', '.join(c['columns'])}")
    return "\n".join(lines)


def _impact(args: argparse.Namespace) -> dict:
    return impact(_catalog(args), load_asset_graph(), args.dataset, args.column).as_dict()


def _impact_text(answer: dict) -> str:
    column = f" column {answer['column']}" if answer["column"] else ""
    lines = [f"impact of a change to {answer['dataset']}{column}",
             f"downstream assets ({len(answer['downstream'])}):"]
    lines += [f"  {d['dataset']:45} {d['owner']}" for d in answer["downstream"]]
    lines.append(f"consumers ({len(answer['consumers'])}):")
    for c in answer["consumers"]:
        via = f"reads {c['via']}" + (f": {', '.join(c['columns'])}" if c["columns"] else " (downstream)")
        lines.append(f"  {c['name']:30} {c['kind']:9} {c['criticality']:8} team:{c['owner']:20} {via}")
    lines.append("notify:")
    for n in answer["notify"]:
        lines.append(f"  {n['team']:25} {n['contact']:32} on call {n['on_call']:34} {'; '.join(n['because'])}")
    if answer["column"]:
        lines.append("(no column-level lineage: every downstream asset and its consumers are listed)")
    return "\n".join(lines)


def _access(args: argparse.Namespace) -> dict:
    catalog = _catalog(args)
    key = catalog.dataset_key(args.dataset)
    if not catalog.datasets[key].published:
        raise CatalogError(f"{key} is not published: no role reads it through governance (denied to every role)")
    return access_matrix(catalog, key)


def _access_text(answer: dict) -> str:
    roles = answer["roles"]
    table = [["", *roles],
             ["rows", *(r["row_filter"] or ("all" if r["dataset"].startswith("allowed") else "denied") for r in roles.values())]]
    table += [[column, *(r["columns"][column] for r in roles.values())] for column in answer["columns"]]
    crossing = [f"  {role} {column}: {reason}" for role, r in roles.items()
                for column, reason in r["crossing_row_filter"].items()]
    if crossing:
        crossing.insert(0, "columns that depend on rows outside a role's row filter:")
    return "\n".join([f"access to {answer['dataset']} (role x column)", _aligned(table), *crossing])


def _aligned(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table)


def _validate(args: argparse.Namespace) -> dict:
    catalog = _catalog(args)
    result = validate(catalog, load_asset_graph(consumers=True), load_manifest(), warehouse_path(), DBT_EXPOSURES)
    answer = {"valid": result.ok, "problems": result.problems, "notes": result.notes}
    if not result.ok:
        raise Failed(answer)
    return answer


def _validate_text(answer: dict) -> str:
    lines = [f"problem: {p}" for p in answer["problems"]] + [f"note: {n}" for n in answer["notes"]]
    lines.append("valid" if answer["valid"] else f"invalid: {len(answer['problems'])} problem(s)")
    return "\n".join(lines)


def _report(args: argparse.Namespace) -> dict:
    catalog = _catalog(args)
    status = latest_check_status(catalog, lineage_dir())
    try:
        costs = {cost.dataset: cost for cost in summarize(catalog, read_costs(warehouse_path()))}
    except CostStoreError:  # the report is still useful without the cost column's values
        costs = {}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cards = cards_by_dataset(catalog, lineage_dir(), mlflow_artifacts_dir())
    out.write_text(render_report(catalog, load_asset_graph(), status, costs=costs, model_cards=cards),
                   encoding="utf-8")
    return {"report": str(out), "datasets": len(catalog.datasets), "datasets_with_check_status": len(status),
            "datasets_with_cost": len(costs), "model_cards": sum(len(found) for found in cards.values())}


def _cost(args: argparse.Namespace) -> dict:
    catalog = _catalog(args)
    costs = summarize(catalog, read_costs(warehouse_path(), days=args.days))
    return {"warehouse_table": "ops.asset_costs", "days": args.days,
            "datasets": [cost.as_dict() for cost in costs[: args.top]]}


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


def _cost_text(answer: dict) -> str:
    if not answer["datasets"]:
        return "no cost recorded yet: materialize something (ops.asset_costs is written by every materialization)"
    rows = [["dataset", "owner", "days", "wall s", "cpu s", "peak mem", "written", "spill", "trend", "recent", "alert"]]
    for c in answer["datasets"]:
        rows.append([c["dataset"], c["owner"], str(c["latest_days"] or "-"), f"{c['wall_seconds']:.2f}",
                     f"{c['cpu_seconds']:.2f}",
                     "-" if c["peak_memory_mb"] is None else f"{c['peak_memory_mb']:.0f} MB",
                     _size(c["bytes_written"]), _size(c["spill_bytes"]),
                     "new" if c["trend"] is None else f"{c['trend']:.2f}x", sparkline(c["recent_seconds"]),
                     c["alert"] or ("budget ok" if c["budget"] else "")])
    return (_aligned(rows) + "\n(latest materialization of each dataset, most expensive first; trend: its wall time "
            "over the median of its previous ones of the same number of days; recent: those, oldest first)")


def _repository_catalog(args: argparse.Namespace):
    """Governed reads and tokens use the repository's catalog only: a caller's own policy file decides nothing."""
    if Path(args.catalog).resolve() != CATALOG_DIR.resolve():
        raise CatalogError(f"--catalog is for inspecting a catalog; `{args.command}` uses the repository's catalog "
                           f"({CATALOG_DIR}) only")
    return load_catalog()


def _token_from(args: argparse.Namespace) -> str | None:
    """The caller's token: from --token-file, else GOVERNANCE_TOKEN (never from the command line, which `ps` shows)."""
    if args.token_file:
        try:
            return Path(args.token_file).read_text().strip()
        except (OSError, UnicodeError) as error:
            raise IdentityError(f"--token-file {args.token_file}: cannot be read ({type(error).__name__})") from None
    return os.environ.get("GOVERNANCE_TOKEN")


def _query(args: argparse.Namespace) -> dict:
    try:  # a call that fails here, before the governed query, is audited here (once)
        _repository_catalog(args)
        token = _token_from(args)
    except (CatalogError, IdentityError) as error:
        audit_unanswered(args.sql, str(error), decision="deny")
        raise
    except Exception as error:  # noqa: BLE001
        reason = f"internal error ({type(error).__name__})"
        audit_unanswered(args.sql, reason)
        raise AccessDenied(reason) from None
    result = governed_query(args.sql, token=token)
    return {"columns": result.columns, "rows": [list(row) for row in result.rows], "datasets": result.datasets,
            "seconds": round(result.seconds, 3), "max_rows": args.max_rows}


def _token_issue(args: argparse.Namespace) -> dict:
    token, record = issue_token(_repository_catalog(args), args.principal, days=args.days, by=getpass.getuser())
    return {**record, "token": token}


def _token_issue_text(answer: dict) -> str:
    return (f"token {answer['id']} for {answer['principal']} (role {answer['role']}), expires {answer['expires_at']}\n"
            f"{answer['token']}\n(shown once: only its hash is kept. Hand it over as GOVERNANCE_TOKEN or a file.)")


def _token_revoke(args: argparse.Namespace) -> dict:
    return revoke_token(args.token_id, by=getpass.getuser())


def _token_list(args: argparse.Namespace) -> dict:
    return {"tokens": list_tokens()}


def _token_list_text(answer: dict) -> str:
    rows = [["id", "principal", "role", "state", "issued", "expires"]]
    rows += [[t["id"], t["principal"], t["role"], t["state"], t["issued_at"], t["expires_at"]] for t in answer["tokens"]]
    return _aligned(rows)


def _keys_rotate(args: argparse.Namespace) -> dict:
    return {"rotated": str(rotate_masking_secret()),
            "effect": "every hash token changes for every audience; tokens handed out before cannot be linked to "
                      "new ones; the warehouse is unchanged (masking happens at read time)"}


def _apply(args: argparse.Namespace) -> dict:
    plan = apply_catalog(_repository_catalog(args), execute=args.yes)
    return {"applied": args.yes, "notes": plan.notes, "statements": [str(step) for step in plan.steps]}


def _apply_text(answer: dict) -> str:
    lines = [f"-- {note}" for note in answer["notes"]] + answer["statements"]
    count = len(answer["statements"])
    if not count:
        lines.append("-- no changes: the warehouse matches the catalog")
    elif answer["applied"]:
        lines.append(f"-- applied {count} statement(s) in one transaction")
    else:
        lines.append(f"-- {count} statement(s) planned, nothing changed: `governance apply --yes` runs them")
    return "\n".join(lines)


def _password(args: argparse.Namespace) -> dict:
    password, until = issue_password(_repository_catalog(args), args.principal, days=args.days)
    return {"login": args.principal, "valid_until": until.isoformat(), "password": password}


def _password_text(answer: dict) -> str:
    return (f"password of the PostgreSQL login {answer['login']}, valid until {answer['valid_until']}\n"
            f"{answer['password']}\n(shown once: the server keeps only its SCRAM verifier. Hand it over to the "
            "principal; a new one replaces it.)")


def _audit_verify(args: argparse.Namespace) -> dict:
    result = verify_audit_log()
    answer = {"ok": result.ok, "records": result.records, "line": result.line, "message": result.message}
    if not result.ok:
        raise Failed(answer)
    return answer


def _query_text(answer: dict) -> str:
    rows = [[str(v) for v in row] for row in answer["rows"][: answer["max_rows"]]]
    shown = f"{len(rows)} of {len(answer['rows'])}" if len(rows) < len(answer["rows"]) else str(len(rows))
    return _aligned([answer["columns"], *rows]) + f"\n({shown} row(s), {answer['seconds']} s)"


def _key_values(answer: dict) -> str:
    return _aligned([[key, str(value)] for key, value in answer.items()])


def _trace(args: argparse.Namespace) -> dict:
    return trace(load_events(events_path()), args.dataset, args.version)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="governance", description="Ask the governance catalog; read governed data.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--catalog", default=str(CATALOG_DIR), help="catalog folder (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    dataset_help = "asset key as the Dagster UI writes it (marts/flights) or table name"

    owner = commands.add_parser("owner", help="who owns DATASET and who is on call")
    owner.add_argument("dataset", help=dataset_help)
    owner.set_defaults(handler=_owner, render=_key_values)

    consumers = commands.add_parser("consumers", help="dashboards, services and models that read DATASET")
    consumers.add_argument("dataset", help=dataset_help)
    consumers.set_defaults(handler=_consumers, render=_consumers_text)

    impact_parser = commands.add_parser("impact", help="every downstream asset and consumer, and whom to notify")
    impact_parser.add_argument("dataset", help=dataset_help)
    impact_parser.add_argument("--column", help="only consumers that read this column (directly)")
    impact_parser.set_defaults(handler=_impact, render=_impact_text)

    access = commands.add_parser("access", help="role x column access matrix of a published DATASET")
    access.add_argument("dataset", help=dataset_help)
    access.set_defaults(handler=_access, render=_access_text)

    validate_parser = commands.add_parser("validate", help="catalog complete and consistent, no unapproved breaking change")
    validate_parser.set_defaults(handler=_validate, render=_validate_text)

    report = commands.add_parser("report", help="write the self-contained HTML report for data owners")
    report.add_argument("--out", required=True, help="HTML file to write")
    report.set_defaults(handler=_report, render=_key_values)

    cost = commands.add_parser("cost", help="datasets by cost of their latest materialization, with their trend "
                               "(ops.asset_costs)")
    cost.add_argument("--days", type=int, help="only materializations of the last DAYS days")
    cost.add_argument("--top", type=int, default=100, help="datasets listed (default: %(default)s)")
    cost.set_defaults(handler=_cost, render=_cost_text)

    query = commands.add_parser("query", help="run one SELECT over the published datasets as the principal of your "
                                "token (GOVERNANCE_TOKEN or --token-file), audited")
    query.add_argument("--token-file", help="file holding the token (default: the GOVERNANCE_TOKEN variable)")
    query.add_argument("--max-rows", type=int, default=50, help="rows shown as text (default: %(default)s)")
    query.add_argument("sql")
    query.set_defaults(handler=_query, render=_query_text)

    token = commands.add_parser("token", help="issue, revoke and list the tokens principals read governed data with")
    token_verbs = token.add_subparsers(dest="token_command", required=True)
    issue = token_verbs.add_parser("issue", help="a new token for PRINCIPAL (a consumer, or a member's e-mail)")
    issue.add_argument("principal")
    issue.add_argument("--days", type=int, default=DEFAULT_DAYS, help="lifetime (default: %(default)s)")
    issue.set_defaults(handler=_token_issue, render=_token_issue_text)
    revoke = token_verbs.add_parser("revoke", help="revoke the token TOKEN_ID (governance token list)")
    revoke.add_argument("token_id")
    revoke.set_defaults(handler=_token_revoke, render=_key_values)
    token_verbs.add_parser("list", help="every token: id, principal, role, state (never the token)").set_defaults(
        handler=_token_list, render=_token_list_text)

    keys = commands.add_parser("keys", help="the masking secret hash tokens are keyed with")
    keys_verbs = keys.add_subparsers(dest="keys_command", required=True)
    keys_verbs.add_parser("rotate", help="replace it: every hash token changes").set_defaults(
        handler=_keys_rotate, render=_key_values)

    apply = commands.add_parser("apply", help="compile the catalog's access policy into the PostgreSQL warehouse "
                                "(PLATFORM_WAREHOUSE_URL): print the plan, or run it")
    mode = apply.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true", help="print the statements it would run, change nothing "
                      "(the default)")
    mode.add_argument("--yes", action="store_true", help="run them, in one transaction")
    apply.set_defaults(handler=_apply, render=_apply_text)
    password = commands.add_parser("password", help="a new password for the PostgreSQL login of PRINCIPAL "
                                   "(made by governance apply), shown once")
    password.add_argument("principal")
    password.add_argument("--days", type=int, default=PASSWORD_DAYS, help="valid for (default: %(default)s)")
    password.set_defaults(handler=_password, render=_password_text)

    provenance = commands.add_parser("trace", help="the runs, input versions and landing files behind a version "
                                     "of DATASET (a prediction: the model version that scored it)")
    provenance.add_argument("dataset", help="asset key (marts/flights), table (marts.flights) or dataset name")
    provenance.add_argument("--version", help="a dataset version, or a run id (OpenLineage or Dagster); "
                            "the latest when omitted")
    provenance.set_defaults(handler=_trace, render=render)

    audit = commands.add_parser("audit", help="the audit log of governed queries")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="check the audit log's hash chain; name the first record "
                                       "edited, inserted, deleted, reordered or cut short")
    verify.set_defaults(handler=_audit_verify, render=lambda answer: answer["message"])
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        return _usage_error(error, sys.argv[1:] if argv is None else argv)
    status = 0
    try:
        answer = args.handler(args)
    except Failed as failure:
        answer, status = failure.answer, 1
    except (CatalogError, AccessDenied, IdentityError, LineageError, ApplyError, CostStoreError) as error:
        print(f"governance: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(answer, indent=2, default=str) if args.json else args.render(answer))
        sys.stdout.flush()
    except (OSError, UnicodeError) as error:  # a closed pipe, an encoding the output cannot take
        print(f"governance: the answer could not be written to standard output ({type(error).__name__})",
              file=sys.stderr)
        return 1
    return status


def _usage_error(error: UsageError, argv: list) -> int:
    """One line; a governed query whose command line cannot be read is audited too (its arguments are not
    repeated in the record: they were not understood)."""
    print(f"governance: {error.prog}: {error}", file=sys.stderr)
    if error.prog.endswith(" query") or "query" in argv:
        reason = re.sub(r"'[^']*'|(unrecognized arguments:).*", lambda m: m[1] or "'…'", str(error))
        try:
            audit_unanswered(None, f"the command line could not be read: {reason}")
        except AccessDenied as unaudited:
            print(f"governance: {' '.join(str(unaudited).split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
