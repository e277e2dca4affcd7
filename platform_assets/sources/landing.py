"""The landing zone and its delivery contract: one folder per source, one manifest per delivery.

    <data>/landing/<source>/                         the source's data files (plain names)
    <data>/landing/<source>/_manifests/manifest_<YYYY-MM-DD>.json   one per delivery, written last

A manifest names its source and data date and lists every file of the delivery by its plain name in the
source's folder, with its sha256 and the number of data rows. Only files a manifest lists are ever read.
Everything here trusts nothing that arrives: manifests, names, symlinks and counts are checked, and each
problem is a DeliveryError naming the manifest or file and the reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MANIFEST_DIR = "_manifests"
MANIFEST_NAME = re.compile(r"manifest_(\d{4}-\d{2}-\d{2})\.json")
SHA256 = re.compile(r"[0-9a-f]{64}")
MANIFEST_LIMIT_BYTES = 4 * 2**20  # a manifest lists files; anything larger is not one


class DeliveryError(Exception):
    """A delivery cannot be ingested; the message names the manifest or file and what to do."""


class DeliveryNotYetComplete(DeliveryError):
    """The manifest or a listed file is not there (yet): a delivery still arriving, which may resolve."""


@dataclass(frozen=True)
class DeliveredFile:
    name: str
    path: Path
    sha256: str
    rows: int


@dataclass(frozen=True)
class Delivery:
    source: str
    data_date: dt.date
    manifest: Path
    id: str  # the manifest's content digest: a re-delivery of the same day is a new delivery
    files: tuple[DeliveredFile, ...]


def days_between(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    for offset in range((end - start).days + 1):
        yield start + dt.timedelta(days=offset)


def source_dir(landing_dir: Path, source: str) -> Path:
    return landing_dir / source


def manifest_path(landing_dir: Path, source: str, day: dt.date) -> Path:
    return source_dir(landing_dir, source) / MANIFEST_DIR / f"manifest_{day.isoformat()}.json"


def delivered_manifests(landing_dir: Path, source: str) -> tuple[dict[dt.date, Path], list[str]]:
    """The source's manifests by data date, and a warning for every other name in the manifests folder
    (ignored: a copy, a typo, a file in progress is not a delivery). Hidden files are work in progress."""
    folder = source_dir(landing_dir, source) / MANIFEST_DIR
    manifests: dict[dt.date, Path] = {}
    ignored = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.name.startswith("."):
            continue
        match = MANIFEST_NAME.fullmatch(path.name)
        day = _date(match.group(1)) if match else None
        if day is None:
            ignored.append(f"{path}: ignored, not a manifest name (manifest_YYYY-MM-DD.json)")
        else:
            manifests[day] = path
    return manifests, ignored


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def delivery_id(manifest_bytes: bytes) -> str:
    return hashlib.sha256(manifest_bytes).hexdigest()[:16]


def _plain_name(name) -> bool:
    return (isinstance(name, str) and bool(name) and len(name) <= 255 and name.isprintable()
            and not name.startswith(".") and "/" not in name and "\\" not in name and name == name.strip()
            and name != MANIFEST_DIR)


def read_manifest(landing_dir: Path, source: str, day: dt.date) -> Delivery:
    """The delivery of `source` for `day`, as its manifest announces it: every entry a plain file name inside
    the source's folder, with a sha256 and a row count. Checks the manifest only, not the files."""
    manifest = manifest_path(landing_dir, source, day)
    try:
        if manifest.stat().st_size > MANIFEST_LIMIT_BYTES:
            raise DeliveryError(f"{manifest}: {manifest.stat().st_size:,} bytes, more than a manifest's "
                                f"{MANIFEST_LIMIT_BYTES:,}; the delivery of {source} for {day} is refused")
        content = manifest.read_bytes()
    except FileNotFoundError:
        raise DeliveryNotYetComplete(f"{manifest}: not delivered yet (no manifest for {source} on {day})") from None
    except OSError as error:
        raise DeliveryNotYetComplete(f"{manifest}: not readable yet ({error.strerror})") from None

    def refused(problem: str) -> DeliveryError:
        return DeliveryError(f"{manifest}: {problem}; the delivery of {source} for {day} is refused "
                             "(the source system re-sends it with a corrected manifest)")

    try:
        entries = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = f" (line {error.lineno} column {error.colno})" if isinstance(error, json.JSONDecodeError) else ""
        raise refused(f"not valid JSON{where}: {getattr(error, 'msg', error)}") from None
    if not isinstance(entries, dict):
        raise refused(f"must be a JSON object with source, data_date and files, not {type(entries).__name__}")
    missing = [field for field in ("source", "data_date", "files") if field not in entries]
    if missing:
        raise refused(f"lacks {', '.join(missing)}")
    if entries["source"] != source:
        raise refused(f"says source {str(entries['source'])[:40]!r}, but lies in the folder of '{source}'")
    if entries["data_date"] != day.isoformat():
        raise refused(f"says data_date {str(entries['data_date'])[:40]!r}, but its name says {day}")
    if not isinstance(entries["files"], list) or not entries["files"]:
        raise refused("files must be a non-empty list of {name, sha256, rows}")
    files = []
    for index, entry in enumerate(entries["files"]):
        where = f"files[{index}]"
        if not isinstance(entry, dict):
            raise refused(f"{where} must be an object with name, sha256 and rows")
        if lacking := [field for field in ("name", "sha256", "rows") if field not in entry]:
            raise refused(f"{where} lacks {', '.join(lacking)}")
        name, sha256, rows = entry["name"], entry["sha256"], entry["rows"]
        if not _plain_name(name):
            raise refused(f"{where}.name {str(name)[:80]!r} is not a plain file name in the source's folder "
                          "(no path, no '..', not hidden)")
        if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
            raise refused(f"{where}.sha256 of {name} is not 64 lowercase hex digits")
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise refused(f"{where}.rows of {name} must be a whole number >= 0")
        if any(f.name == name for f in files):
            raise refused(f"{where}: {name} is listed twice")
        files.append(DeliveredFile(name, source_dir(landing_dir, source) / name, sha256, rows))
    return Delivery(source, day, manifest, delivery_id(content), tuple(files))


def verify_file(landing_dir: Path, file: DeliveredFile) -> None:
    """The listed file is there, is a regular file inside the landing zone, and has the announced sha256."""
    path = file.path
    if not path.exists():
        if path.is_symlink():
            raise DeliveryError(f"{path}: a symlink to nothing ({path.readlink()}); refused")
        raise DeliveryNotYetComplete(f"{path}: listed in the manifest but not (yet) in the landing zone")
    resolved = path.resolve()
    if not resolved.is_relative_to(landing_dir.resolve()):
        raise DeliveryError(f"{path}: a symlink to {resolved}, outside the landing zone; refused and not read")
    if not resolved.is_relative_to(path.parent.resolve()):
        raise DeliveryError(f"{path}: a symlink to {resolved}, outside the source's own folder; refused and not read")
    if not resolved.is_file():
        raise DeliveryError(f"{path}: not a regular file; refused")
    if resolved.stat().st_size == 0:
        raise DeliveryError(f"{path}: empty file (0 bytes); the source system re-delivers it")
    with resolved.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    if digest != file.sha256:
        raise DeliveryError(f"{path}: sha256 {digest} does not match the manifest ({file.sha256}); "
                            "the file changed after export: refused, the source system re-delivers it")


def verified_delivery(landing_dir: Path, source: str, day: dt.date) -> Delivery:
    """The manifest and every file it lists, verified; raises DeliveryError naming the first problem."""
    delivery = read_manifest(landing_dir, source, day)
    for file in delivery.files:
        verify_file(landing_dir, file)
    return delivery


def unlisted_files(landing_dir: Path, source: str) -> list[Path]:
    """Data files in the source's folder that no manifest lists: never read (a delivery still being written,
    or a file slipped in beside one). Hidden files (work in progress) are left out."""
    folder = source_dir(landing_dir, source)
    if not folder.is_dir():
        return []
    listed: set[str] = set()
    for day in delivered_manifests(landing_dir, source)[0]:
        try:
            listed.update(file.name for file in read_manifest(landing_dir, source, day).files)
        except DeliveryError:
            continue
    return [path for path in sorted(folder.iterdir())
            if path.name != MANIFEST_DIR and not path.name.startswith(".") and path.name not in listed]


def write_delivery(landing_dir: Path, source: str, day: dt.date, files: dict[str, tuple[bytes, int]],
                   extra: dict | None = None) -> dict:
    """Deliver `files` (name -> (content, data rows)) for `source` and `day` the way the contract asks: each
    file under a hidden temporary name renamed into place, then the manifest, last. Returns the manifest."""
    entries = []
    for name, (content, rows) in files.items():
        if not _plain_name(name):
            raise ValueError(f"{name!r} is not a plain file name")
        write_atomically(source_dir(landing_dir, source) / name, content)
        entries.append({"name": name, "sha256": hashlib.sha256(content).hexdigest(), "rows": rows,
                        "bytes": len(content)})
    manifest = {"source": source, "data_date": day.isoformat(), **(extra or {}), "files": entries}
    write_atomically(manifest_path(landing_dir, source, day), json.dumps(manifest, indent=2).encode())
    return manifest


def write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(payload)
    temporary.replace(path)
