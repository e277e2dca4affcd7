"""The audit log of governed reads: one JSON object per line in <data>/governance/audit.jsonl, hash-chained.

Each record carries `seq` (its position in the chain, from 1) and `prev` (the SHA-256 of the previous record's
line as written; a fixed genesis value for the first), so an edited, inserted, deleted or reordered record
breaks the chain where it happened. An append holds an exclusive lock on the log (flock) while it reads the last
record and writes the next one, so concurrent processes cannot fork the chain. The head file next to the log
(audit.head) holds the number of records and the last line's hash: a log cut short at a record boundary is told
from a complete one. Without a copy of the head kept elsewhere, whoever can write both files can rewrite them
whole; the chain makes partial edits evident, it does not make the file immutable.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from governance.paths import governance_dir

AUDIT_FILE = "audit.jsonl"
HEAD_FILE = "audit.head"
GENESIS = hashlib.sha256(b"governance audit log: genesis").hexdigest()


class AuditUnavailable(OSError):
    """The audit log cannot be appended to; nothing is answered without a record."""


def audit_log_path(data_dir: Path | None = None) -> Path:
    return governance_dir(data_dir) / AUDIT_FILE


def audit_head_path(data_dir: Path | None = None) -> Path:
    return governance_dir(data_dir) / HEAD_FILE


def canonical_line(record: dict) -> bytes:
    """The one serialization of a record: sorted keys, no spaces, ASCII only (a lone surrogate stays escaped)."""
    return json.dumps(record, sort_keys=True, ensure_ascii=True, separators=(",", ":"), default=str).encode("ascii")


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def append_audit_record(record: dict, data_dir: Path | None = None) -> dict:
    """Append one record, chained to the last one, under an exclusive lock on the log; returns it as written.
    Raises AuditUnavailable when the log cannot be written or its end is not a whole record."""
    path = audit_log_path(data_dir)
    try:
        line = canonical_line(record)  # before taking the lock: a record that cannot be written fails here
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "a+b") as log:
            fcntl.flock(log.fileno(), fcntl.LOCK_EX)  # released when the file closes
            seq, prev = _next_link(log, path)
            written = {**record, "seq": seq, "prev": prev}
            line = canonical_line(written)
            log.write(line + b"\n")
            log.flush()
            os.fsync(log.fileno())
            _write_head(audit_head_path(data_dir), seq, line_hash(line))
    except (OSError, TypeError, ValueError) as error:
        if isinstance(error, AuditUnavailable):
            raise
        raise AuditUnavailable(f"the audit log {path} cannot be written ({type(error).__name__}): "
                               "nothing is answered without a record") from None
    return written


def _next_link(log, path: Path) -> tuple[int, str]:
    """(seq, prev) of the record after the log's last line. A log written before chaining continues the count
    of its lines and chains to its last line."""
    log.seek(0, os.SEEK_END)
    size = log.tell()
    if size == 0:
        return 1, GENESIS
    last = _last_line(log, size)
    if last is None:
        raise AuditUnavailable(f"the audit log {path} ends in a partial record: nothing is answered until it is "
                               "repaired (governance audit verify names the line)")
    try:
        record = json.loads(last)
    except ValueError:
        record = None
    if isinstance(record, dict) and isinstance(record.get("seq"), int) and "prev" in record:
        return record["seq"] + 1, line_hash(last)
    log.seek(0)
    return sum(1 for _ in log) + 1, line_hash(last)


def _last_line(log, size: int) -> bytes | None:
    """The last line without its newline, or None when the file does not end with one (a cut-short write)."""
    log.seek(size - 1)
    if log.read(1) != b"\n":
        return None
    block, end = 8192, size - 1
    tail = b""
    while True:
        start = max(0, end - block)
        log.seek(start)
        tail = log.read(end - start) + tail
        end = start
        newline = tail.rfind(b"\n")
        if newline >= 0:
            return tail[newline + 1:]
        if start == 0:
            return tail
        block *= 2


def _write_head(path: Path, records: int, last_hash: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps({"records": records, "last": last_hash}) + "\n")
    os.replace(temporary, path)


def read_audit_log(data_dir: Path | None = None) -> list[dict]:
    path = audit_log_path(data_dir)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class Verification:
    ok: bool
    message: str  # one line: how many records verified, or the first line that breaks the chain and why
    records: int = 0  # lines read
    line: int | None = None  # the first line found edited, inserted, reordered, missing or unchained


def verify_audit_log(data_dir: Path | None = None) -> Verification:
    """Check the whole chain and the head; name the first record that was edited, inserted, deleted (missing),
    reordered or cut short, by line number."""
    path = audit_log_path(data_dir)
    if not path.exists():
        return Verification(True, f"no audit log at {path}: nothing to verify")
    content = path.read_bytes()
    lines = content.split(b"\n")
    complete = lines[-1] == b""
    lines = lines[:-1] if complete else lines
    total = len(lines)
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or (number == total and not complete):
            cut = number == total and not complete
            return Verification(False, f"line {number}: " + ("cut short: the log was truncated inside this record"
                                if cut else "not a JSON record: edited"), total, number)
        records.append(record)

    def chained(record: dict) -> bool:
        return isinstance(record.get("seq"), int) and isinstance(record.get("prev"), str)

    unchained = next((index for index, record in enumerate(records) if chained(record)), total)
    if unchained == total and total:
        return Verification(False, f"unchained: all {total} record(s) were written before the log was chained: "
                            "none can be verified", total, 1)
    hashes = [line_hash(line) for line in lines]
    by_hash = {digest: number for number, digest in enumerate(hashes, 1)}
    expected_seq, expected_prev = unchained + 1, hashes[unchained - 1] if unchained else GENESIS
    head = _read_head(audit_head_path(data_dir))

    def intact(index: int) -> bool:
        if index + 1 < total:
            return records[index + 1].get("prev") == hashes[index]
        return head is not None and head[1] == hashes[index]

    for index in range(unchained, total):
        problem = _link_problem(records, hashes, by_hash, intact, index, expected_seq, expected_prev, chained)
        if problem:
            return Verification(False, problem[1], total, problem[0])
        expected_seq, expected_prev = records[index]["seq"] + 1, hashes[index]
    head_problem = _head_problem(audit_head_path(data_dir), head, total, records, hashes, unchained)
    if head_problem:
        return Verification(False, head_problem[1], total, head_problem[0])
    if unchained:
        return Verification(False, f"unchained up to line {unchained}: those records were written before the log "
                            f"was chained and cannot be verified; lines {unchained + 1}-{total} verified "
                            f"({total - unchained} record(s))", total, unchained)
    return Verification(True, f"verified {total} record(s): the chain is whole from the first record to the head "
                        f"({hashes[-1] if hashes else GENESIS})", total)


def _link_problem(records, hashes, by_hash, intact, index, expected_seq, expected_prev,
                  chained) -> tuple[int, str] | None:
    """Why line index+1 does not follow the chain so far, named at the first line that was changed."""
    number, record = index + 1, records[index]
    if not chained(record):
        return number, f"line {number}: not a chained record (no seq/prev) after chained ones: inserted or edited"
    if record["seq"] == expected_seq and record["prev"] == expected_prev:
        return None
    if record["prev"] == expected_prev:
        return number, f"line {number}: edited (it chains to line {number - 1} but is not record {expected_seq})"
    later = by_hash.get(record["prev"])
    if later is not None and later > number:
        return number, (f"line {number}: reordered (it holds record {record['seq']}, which follows line {later}; "
                        f"record {expected_seq} belongs here)")
    following = records[index + 1] if index + 1 < len(records) else None
    if following and chained(following) and following["seq"] == expected_seq and following["prev"] == expected_prev:
        return number, f"line {number}: inserted (the next record chains to the line before it)"
    earlier = by_hash.get(record["prev"])
    if earlier is not None and earlier < number - 1:
        return earlier + 1, f"line {earlier + 1}: inserted (line {number} chains to line {earlier}, skipping it)"
    if record["seq"] == expected_seq:
        if intact(index):  # the next record (or the head) still chains to this line: the one before changed
            return number - 1, f"line {number - 1}: edited (line {number} chained to a different record)"
        return number, f"line {number}: edited (it does not chain to line {number - 1}, nor does the next to it)"
    if record["seq"] > expected_seq:
        missing = (f"record {expected_seq}" if record["seq"] == expected_seq + 1
                   else f"records {expected_seq}-{record['seq'] - 1}")
        return number, f"line {number}: {missing} missing before this line (deleted)"
    return number, f"line {number}: out of place (record {record['seq']} where record {expected_seq} belongs)"


def _read_head(path: Path) -> tuple[int, str] | None:
    try:
        head = json.loads(path.read_text())
        return int(head["records"]), str(head["last"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _head_problem(path: Path, head, total: int, records, hashes, unchained) -> tuple[int, str] | None:
    """The head names how many records the log held and the last one's hash: records cut from the end, or an
    edit of the last record, show there."""
    if total == unchained:
        return None
    if head is None:
        return total, (f"the head file {path} is missing or unreadable: whether records were cut from the end "
                       "cannot be told")
    written, last = head
    seq = records[-1]["seq"]
    if written > seq:
        more = f"record {seq + 1}" if written == seq + 1 else f"records {seq + 1}-{written}"
        return total + 1, f"line {total + 1}: {more} missing at the end (the log was truncated after line {total})"
    if written < seq:
        return total - (seq - written) + 1, (f"line {total - (seq - written) + 1}: appended after the head was "
                                              f"written ({seq - written} record(s) the head does not know)")
    if last != hashes[-1]:
        return total, f"line {total}: edited (the last record differs from the one the head recorded)"
    return None
