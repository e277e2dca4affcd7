"""Why a landing file cannot be read, said so that the person who delivers it can act on it.

The reader's (DuckDB's) error keeps its reason: the error class, what was wrong and where, without the
appendix written for DuckDB users (its options dump, advice about its own settings, the SQL), with quoted
file content cut to an excerpt, so a message stays short whatever the file holds. A hint is added only where
the file's own bytes prove it: a compressed, archived or Parquet file under a text format's name, a UTF-16
byte order mark, NUL bytes, the first byte that is not UTF-8, a header line separated by something else
than ','. The first bytes are checked before DuckDB reads a file (`format_mismatch`); the rest only once a
read has failed (`unreadable_message`). A file of a source with personal data (the catalog's `pii:` columns)
never has its content quoted: the message says which line instead, since it is shown outside the warehouse.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

MESSAGE_LIMIT = 600  # characters of a whole message (the file's path aside, when it is very long)
EXCERPT_LIMIT = 120  # characters of any file content quoted in a message
HEAD_BYTES = 64 * 1024  # a file's first bytes: its signature, byte order mark and header line
CHUNK_BYTES = 8 * 2**20  # read at a time when a failed file is scanned for NUL and non-UTF-8 bytes
DUCKDB_QUOTE_LIMIT = 10_000  # DuckDB quotes at most this many characters of an offending line

# First bytes of formats that are never text: (bytes, what the file is).
SIGNATURES = (
    (b"\x1f\x8b", "a gzip file"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PAR1", "a Parquet file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"\x28\xb5\x2f\xfd", "a zstd file"),
    (b"BZh", "a bzip2 file"),  # followed by the block size, a digit 1-9 (checked below)
)
GZIP_SUFFIX = ".gz"  # DuckDB reads a text file named *.gz as gzip (compression 'auto')
BYTE_ORDER_MARKS = (  # longest first: UTF-32 LE begins with UTF-16 LE's mark
    (b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"),
)
SEPARATORS = {";": "';'", "\t": "tabs", "|": "'|'"}
# Where DuckDB's own appendix starts: advice about its settings, the search space, options, the SQL.
_APPENDIX = re.compile(r"\s*(Possible (Solution|fixes)\b|The search space used|LINE \d+:|Try )|\s+[a-z_]+ = ")
_QUOTED = re.compile(r"'([^'\n]{%d,})'|\"([^\"\n]{%d,})\"" % (EXCERPT_LIMIT + 1, EXCERPT_LIMIT + 1))


def excerpt(text: str, limit: int = EXCERPT_LIMIT) -> str:
    """`text`, or its first `limit` characters, '…' and its length."""
    if len(text) <= limit:
        return text
    length = f"{len(text):,}+" if len(text) >= DUCKDB_QUOTE_LIMIT else f"{len(text):,}"
    return f"{text[:limit]}… ({length} characters)"


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


NOT_SHOWN = "(not shown: the file holds personal data)"
_ANY_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")


def _continuation(lines: list[str], start: int) -> int:
    """Where the line DuckDB quotes at `start` ends: its reason is the one line after the quote, the last before
    its appendix. (An unterminated quote makes it quote the following lines too, up to the end of the file.)"""
    end = next((index for index in range(start + 1, len(lines)) if _APPENDIX.match(lines[index])), len(lines))
    reason = next((index for index in range(end - 1, start, -1) if lines[index].strip()), end)
    return reason


def engine_reason(message: str, path: str | None = None, quote_line: bool = True, personal: bool = False) -> str:
    """The meaningful lines of a DuckDB error, quoted content cut to an excerpt, `path` named by its file
    name (the message names the file first); without the line DuckDB quotes when not `quote_line`. With
    `personal`, no file content at all: the quoted line is left out and said so, quoted values withheld."""
    kept = []
    lines = message.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if _APPENDIX.match(line):
            break
        line = line.strip()
        if path:
            line = line.replace(path, Path(path).name)
        label, quoted = ("Original Line:", line.removeprefix("Original Line:").strip()) \
            if line.startswith("Original Line:") else ("", line)
        if label:
            index = _continuation(lines, index)
            line = f"the line {NOT_SHOWN}" if personal else f"{label} {excerpt(quoted)}" if quote_line else ""
        else:
            index += 1
            if personal:
                line = _ANY_QUOTED.sub(f"'{NOT_SHOWN}'", line)
            else:
                line = _QUOTED.sub(lambda m: repr(excerpt(m.group(1) or m.group(2))), line)
        if line:
            kept.append(_bounded(line.removesuffix("."), 2 * EXCERPT_LIMIT))
    return "; ".join(kept) or "(no reason given)"


def _signature(head: bytes) -> tuple[str, bytes] | None:
    """What a file is by its first bytes (and those bytes), when it is a known binary format."""
    for magic, name in SIGNATURES:
        if head.startswith(magic) and (magic != b"BZh" or head[3:4].isdigit()):
            return name, magic
    return None


def _byte_order_mark(head: bytes) -> tuple[bytes, str] | None:
    return next(((mark, name) for mark, name in BYTE_ORDER_MARKS if head.startswith(mark)), None)


def format_mismatch(head: bytes, declared_format: str, file_name: str) -> str | None:
    """Why a file starting with `head` cannot be the contract's `declared_format`, from its first bytes alone
    (a reliable check, cheaper than a read); None when they do not say."""
    kind, magic = _signature(head) or (None, b"")
    magic = " ".join(f"{byte:02x}" for byte in magic)
    suffix = Path(file_name).suffix
    if declared_format == "parquet":
        if kind and kind != "a Parquet file":
            return f"{kind} (it starts with {magic}) named {suffix}: deliver the Parquet file itself"
        return None
    if kind == "a Parquet file":
        return (f"a Parquet file (it starts with PAR1) named {suffix}: the contract says {declared_format}; "
                f"deliver {declared_format}, or declare the source's format as parquet in sources.yml")
    if kind == "a gzip file" and suffix != GZIP_SUFFIX:
        return (f"a gzip file (it starts with {magic}) named {suffix}: deliver it uncompressed, or name it "
                f"{suffix}.gz (the source's landing_path in sources.yml), which is read as gzip")
    if kind and kind != "a gzip file":
        return f"{kind} (it starts with {magic}) named {suffix}: deliver the {declared_format} file itself, uncompressed"
    mark = _byte_order_mark(head)
    if mark:
        return (f"{mark[1]} text (byte order mark {' '.join(f'{b:02x}' for b in mark[0])}): the contract's text "
                "formats are UTF-8; deliver it as UTF-8")
    return None


@dataclass(frozen=True)
class Position:
    """Where a byte is: its line (1 = first) and its byte within the line (1 = first)."""

    line: int
    byte: int

    def __str__(self) -> str:
        return f"line {self.line:,}, byte {self.byte:,}"


@dataclass(frozen=True)
class TextFacts:
    first_nul: Position | None = None
    first_non_utf8: Position | None = None
    non_utf8_byte: int | None = None


def text_facts(chunks: Iterable[bytes]) -> TextFacts:
    """The first NUL byte and the first byte that is not UTF-8 in a file read as `chunks`, in one pass that
    stops once both are found."""
    nul = non_utf8 = bad_byte = None
    newlines, last_newline, offset, carry = 0, -1, 0, b""  # carry: a UTF-8 sequence cut by the chunk's end

    def position(data: bytes, start: int, index: int) -> Position:
        before = data.rfind(b"\n", 0, index)
        column = index - before if before >= 0 else start + index - last_newline
        return Position(newlines + data.count(b"\n", 0, index) + 1, column)

    for chunk in chunks:
        data, start = carry + chunk, offset - len(carry)  # carry holds no newline (bytes >= 0x80 only)
        carry = b""
        if nul is None and (index := data.find(b"\x00")) >= 0:
            nul = position(data, start, index)
        if non_utf8 is None:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as error:
                if error.reason == "unexpected end of data":
                    carry = data[error.start:]
                else:
                    non_utf8, bad_byte = position(data, start, error.start), data[error.start]
        if chunk.count(b"\n"):
            newlines += chunk.count(b"\n")
            last_newline = offset + chunk.rfind(b"\n")
        offset += len(chunk)
        if nul is not None and non_utf8 is not None:
            break
    if carry and non_utf8 is None:  # the file ends inside a UTF-8 sequence
        non_utf8, bad_byte = Position(newlines + 1, offset - len(carry) - last_newline), carry[0]
    return TextFacts(nul, non_utf8, bad_byte)


def _text_line(head: bytes) -> str | None:
    """The first line of `head` when it is UTF-8 text without control characters (tabs aside)."""
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if any(ord(c) < 32 and c != "\t" for c in text) else text


def delimiter_hint(head: bytes) -> str | None:
    """A hint when the header line is text with another separator and no ','."""
    text = _text_line(head)
    if not text or "," in text:
        return None
    found = [name for separator, name in SEPARATORS.items() if separator in text]
    if not found:
        return None
    return f"the header line has {' and '.join(found)} and no ',': wrong delimiter? the contract says ','"


def read_hints(head: bytes, declared_format: str, file_name: str, facts: TextFacts | None,
               personal: bool = False) -> list[str]:
    """What a failed file's bytes prove: its real format, NUL bytes, the first non-UTF-8 byte, another
    separator in the header line (only when the bytes are text); file content is quoted unless `personal`."""
    mismatch = format_mismatch(head, declared_format, file_name)
    if mismatch:
        return [mismatch]
    if _signature(head) and declared_format != "parquet":
        return []  # compressed text (named .gz): its bytes say nothing about the text
    if declared_format == "parquet":
        first_line = _text_line(head)
        if head[:4] != b"PAR1" and first_line:
            return ["it starts with text, not Parquet's PAR1" + ("" if personal else f": {excerpt(first_line, 60)!r}")]
        return []
    hints = []
    if facts and facts.first_non_utf8:
        hints.append(f"the first byte that is not UTF-8 is 0x{facts.non_utf8_byte:02x} at {facts.first_non_utf8}: "
                     "deliver the file as UTF-8")
    if facts and facts.first_nul:
        hints.append(f"it holds NUL bytes (the first at {facts.first_nul}), which delivered text does not")
    if declared_format == "csv" and not hints:
        hint = delimiter_hint(head)
        hints += [hint] if hint else []
    return hints


def unreadable_message(path: Path | str, declared_format: str, reason: str, hints: list[str] = ()) -> str:
    """`<path>: cannot be read as <format>: <reason>; <hints>`, at most MESSAGE_LIMIT characters (a path
    is never cut): the reason is shortened first, the hints only beyond half of the room."""
    prefix = f"{path}: cannot be read as {declared_format}: "
    room = max(MESSAGE_LIMIT - len(prefix), 2 * EXCERPT_LIMIT)
    tail = "; ".join(hints)
    if not reason:
        return prefix + _bounded(tail, room)
    if tail:
        tail = "; " + _bounded(tail, room // 2)
    return prefix + _bounded(reason, room - len(tail)) + tail


# The edges: reading a landing file's bytes.

def file_head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(HEAD_BYTES)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            yield chunk


def mismatch_message(path: Path, declared_format: str) -> str | None:
    """The message refusing `path` when its first bytes say it is not `declared_format` (checked before a
    read); None otherwise."""
    mismatch = format_mismatch(file_head(path), declared_format, path.name)
    return unreadable_message(path, declared_format, mismatch) if mismatch else None


def read_failure_message(path: Path, declared_format: str, engine_message: str, personal: bool = False) -> str:
    """The message for a file the engine failed to read: its reason and what the file's bytes prove; no file
    content when the source holds `personal` data."""
    head = file_head(path)
    facts = text_facts(_file_chunks(path)) if declared_format != "parquet" and not _signature(head) else None
    # DuckDB 2.0 quotes the line before the one with an invalid UTF-8 byte: the scan names the right one.
    quote_line = facts is None or facts.first_non_utf8 is None
    return unreadable_message(path, declared_format, engine_reason(engine_message, str(path), quote_line, personal),
                              read_hints(head, declared_format, path.name, facts, personal))
