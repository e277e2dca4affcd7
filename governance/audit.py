"""The audit log of governed reads: one JSON object per line in <data>/governance/audit.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

from governance.paths import governance_dir

AUDIT_FILE = "audit.jsonl"


def audit_log_path(data_dir: Path | None = None) -> Path:
    return governance_dir(data_dir) / AUDIT_FILE


def append_audit_record(record: dict, data_dir: Path | None = None) -> None:
    """Append one record as one line (a single write in append mode, so concurrent readers never interleave)."""
    path = audit_log_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, default=str, sort_keys=True) + "\n"
    with path.open("a", encoding="utf-8") as log:
        log.write(line)


def read_audit_log(data_dir: Path | None = None) -> list[dict]:
    path = audit_log_path(data_dir)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
