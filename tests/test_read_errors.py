"""The read-error messages: DuckDB's reason kept and bounded, hints only where the bytes prove them."""

import gzip
import io
import zipfile

import pytest

from platform_assets.sources.read_errors import (
    EXCERPT_LIMIT, MESSAGE_LIMIT, Position, TextFacts, delimiter_hint, engine_reason, excerpt, format_mismatch,
    read_hints, text_facts, unreadable_message,
)

CSV_HEADER = b'"year","month","day","carrier"\n2013,4,2,"UA"\n'
OPTIONS_DUMP = """
Possible Solution: Set the correct encoding, if available, to read this CSV File (e.g., encoding='UTF-16')
Possible Solution: Enable ignore errors (ignore_errors=true) to skip this row

  file = /data/landing/flights/flights_2013-04-02.csv
  delimiter = , (Set By User)
  all_varchar = 1



LINE 1: DESCRIBE SELECT * FROM read_csv($path, header = true, all_varchar = true, delim...
                               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^"""
ENCODING_ERROR = ("Invalid Input Error: CSV Error on Line: 3\nOriginal Line: 2013,4,1,454,500\n"
                  "Invalid unicode (byte sequence mismatch) detected. This file is not utf-8 encoded." + OPTIONS_DUMP)
LINE_SIZE_ERROR = ("Invalid Input Error: CSV Error on Line: 2\nOriginal Line: " + "x" * 10_000
                   + "\nMaximum line size of 2000000 bytes exceeded. Actual Size:31999408 bytes.\n" + OPTIONS_DUMP)
SNIFF_ERROR = """Invalid Input Error: Error when sniffing file "/data/landing/flights/flights_2013-04-02.csv".
It was not possible to automatically detect the CSV parsing dialect
The search space used was:
Delimiter Candidates: ','
Possible fixes:
* Disable the parser's strict mode (strict_mode=false) to allow reading rows that do not comply with the CSV standard.

LINE 1: SELECT "year" FROM read_csv([$path], header = true"""


def test_excerpt_keeps_short_text_and_cuts_long_text_with_its_length():
    assert excerpt("2013,4,2") == "2013,4,2"
    assert excerpt("y" * 500) == "y" * EXCERPT_LIMIT + "… (500 characters)"
    assert excerpt("x" * 10_000).endswith("… (10,000+ characters)")  # DuckDB's quote is itself cut


def test_engine_reason_keeps_the_reason_and_the_line_and_drops_duckdb_s_appendix():
    reason = engine_reason(ENCODING_ERROR)
    assert reason == ("Invalid Input Error: CSV Error on Line: 3; Original Line: 2013,4,1,454,500; "
                      "Invalid unicode (byte sequence mismatch) detected. This file is not utf-8 encoded")
    assert "Possible Solution" not in reason and "ignore_errors" not in reason and "LINE 1" not in reason


def test_engine_reason_cuts_the_quoted_line_and_keeps_the_reason_after_it():
    reason = engine_reason(LINE_SIZE_ERROR)
    assert "Maximum line size of 2000000 bytes exceeded" in reason
    assert "x" * EXCERPT_LIMIT + "… (10,000+ characters)" in reason and len(reason) < 300


def test_engine_reason_names_the_file_by_its_name_and_drops_the_search_space():
    reason = engine_reason(SNIFF_ERROR, "/data/landing/flights/flights_2013-04-02.csv")
    assert reason == ('Invalid Input Error: Error when sniffing file "flights_2013-04-02.csv"; '
                      "It was not possible to automatically detect the CSV parsing dialect")


def test_engine_reason_can_leave_out_the_quoted_line():
    assert "Original Line" not in engine_reason(ENCODING_ERROR, quote_line=False)


def test_engine_reason_cuts_long_quoted_values():
    reason = engine_reason(f"Conversion Error: Could not convert string '{'9' * 5000}' to INT32")
    assert reason.startswith("Conversion Error: Could not convert string '999") and len(reason) < 200


@pytest.mark.parametrize("head, expected", [
    (gzip.compress(CSV_HEADER, mtime=0), "a gzip file (it starts with 1f 8b) named .csv: deliver it uncompressed, or name it "
                                ".csv.gz"),
    (b"PK\x03\x04\x14\x00", "a zip archive (it starts with 50 4b 03 04) named .csv: deliver the csv file itself"),
    (b"PAR1\x15\x04", "a Parquet file (it starts with PAR1) named .csv: the contract says csv; deliver csv, or "
                      "declare the source's format as parquet"),
    (b"BZh91AY&SY", "a bzip2 file (it starts with 42 5a 68) named .csv"),
    (b"\xfd7zXZ\x00\x00", "an xz file (it starts with fd 37 7a 58 5a 00) named .csv"),
    (b"\x28\xb5\x2f\xfd\x04", "a zstd file (it starts with 28 b5 2f fd) named .csv"),
    ("year,month".encode("utf-16"), "UTF-16 text (byte order mark ff fe): the contract's text formats are UTF-8"),
    ("year,month".encode("utf-32"), "UTF-32 text (byte order mark ff fe 00 00)"),
])
def test_first_bytes_name_what_a_csv_file_really_is(head, expected):
    assert format_mismatch(head, "csv", "flights_2013-04-02.csv").startswith(expected)


def test_first_bytes_that_fit_the_format_say_nothing():
    assert format_mismatch(CSV_HEADER, "csv", "flights.csv") is None
    assert format_mismatch(b"\xef\xbb\xbf" + CSV_HEADER, "csv", "flights.csv") is None  # DuckDB reads a UTF-8 BOM
    assert format_mismatch(gzip.compress(CSV_HEADER), "csv", "flights.csv.gz") is None  # read as gzip
    assert format_mismatch(b"PAR1\x15\x04", "parquet", "planes.parquet") is None
    assert format_mismatch(b"BZh is a text", "csv", "flights.csv") is None  # no block size digit: text


def test_a_compressed_parquet_delivery_is_named():
    assert format_mismatch(gzip.compress(b"PAR1"), "parquet", "planes.parquet") == (
        "a gzip file (it starts with 1f 8b) named .parquet: deliver the Parquet file itself")


def test_a_parquet_contract_fed_text_says_it_starts_with_text():
    assert read_hints(CSV_HEADER, "parquet", "planes.parquet", None) == [
        "it starts with text, not Parquet's PAR1: '\"year\",\"month\",\"day\",\"carrier\"'"]


@pytest.mark.parametrize("header, hint", [
    (b"year;month;day\n2013;4;2\n", "the header line has ';' and no ','"),
    (b"year\tmonth\tday\r\n", "the header line has tabs and no ','"),
    (b"year|month;day\n", "the header line has ';' and '|' and no ','"),
])
def test_delimiter_hint_when_the_header_line_has_another_separator(header, hint):
    assert delimiter_hint(header) == hint + ": wrong delimiter? the contract says ','"


@pytest.mark.parametrize("header", [
    b"year,month;day\n",  # has a ','
    b"year month day\n",  # no separator at all
    b"\x1f\x8b\x08\x00\x09\n",  # a gzip header holding a tab byte is not text
    b"ye\xffar;month\n",  # not UTF-8
])
def test_no_delimiter_hint_unless_the_header_is_text_with_another_separator(header):
    assert delimiter_hint(header) is None


def test_a_gzip_file_named_csv_never_gets_the_delimiter_hint():
    head = gzip.compress(CSV_HEADER, mtime=0x0A09)  # its first "line" is 1f 8b 08 00 09: a tab, no ','
    assert head.split(b"\n")[0] == b"\x1f\x8b\x08\x00\x09"
    [hint] = read_hints(head, "csv", "flights.csv", None)
    assert hint.startswith("a gzip file") and "delimiter" not in hint


def test_text_facts_find_the_first_nul_and_non_utf8_byte_across_chunks():
    text = "year,month\n2013,4\n2013,5,\u00e9t\u00e9\n".encode()  # valid UTF-8 with 2-byte sequences
    bad = text + b"2013,6,\xdcA\n" + b"x\x00y\n"
    # every chunking gives the same answer, including one that cuts a UTF-8 sequence in two
    for size in (1, 2, 3, 7, len(bad)):
        facts = text_facts(bad[i:i + size] for i in range(0, len(bad), size))
        assert facts == TextFacts(Position(5, 2), Position(4, 8), 0xdc), size
    assert text_facts([text]) == TextFacts()
    assert text_facts([b"ok\n\xc3"]) == TextFacts(None, Position(2, 1), 0xc3)  # ends inside a sequence


def test_text_hints_name_line_and_byte():
    facts = TextFacts(Position(1, 2), Position(4, 32), 0xdc)
    assert read_hints(CSV_HEADER, "csv", "f.csv", facts) == [
        "the first byte that is not UTF-8 is 0xdc at line 4, byte 32: deliver the file as UTF-8",
        "it holds NUL bytes (the first at line 1, byte 2), which delivered text does not",
    ]


def test_a_message_names_the_file_first_and_stays_bounded_whatever_the_reason():
    path = "/data/landing/flights/flights_2013-04-02.csv"
    message = unreadable_message(path, "csv", engine_reason(LINE_SIZE_ERROR), ["a hint"])
    assert message.startswith(f"{path}: cannot be read as csv: Invalid Input Error: CSV Error on Line: 2")
    assert message.endswith("; a hint") and len(message) <= MESSAGE_LIMIT
    huge = unreadable_message(path, "csv", "r" * 100_000, ["h" * 100_000])
    assert len(huge) <= MESSAGE_LIMIT and "r…; h" in huge
    assert unreadable_message(path, "csv", "", ["only a hint"]) == f"{path}: cannot be read as csv: only a hint"


def test_zip_of_a_csv_is_recognised_from_a_real_archive():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("flights.csv", CSV_HEADER)
    assert format_mismatch(buffer.getvalue(), "jsonl", "weather.jsonl").startswith("a zip archive")


UNTERMINATED_QUOTE_ERROR = ('Invalid Input Error: CSV Error on Line: 25002\nOriginal Line: BK1,"Jane Doe,jane@x.com\n'
                            "BK2,John Roe,john@y.org\nBK3,Ann Poe,ann@z.net\n\nValue with unterminated quote found.\n\n"
                            "Possible fixes:\n* Disable the parser's strict mode" + OPTIONS_DUMP)


def test_an_unterminated_quote_quotes_the_following_lines_which_are_cut_with_the_line():
    reason = engine_reason(UNTERMINATED_QUOTE_ERROR)
    assert reason == ('Invalid Input Error: CSV Error on Line: 25002; Original Line: BK1,"Jane Doe,jane@x.com; '
                      "Value with unterminated quote found")


@pytest.mark.parametrize("error", [ENCODING_ERROR, LINE_SIZE_ERROR, UNTERMINATED_QUOTE_ERROR, SNIFF_ERROR])
def test_a_file_with_personal_data_has_no_content_quoted_only_where(error):
    reason = engine_reason(error, "/data/landing/flights/flights_2013-04-02.csv", personal=True)
    for content in ("2013,4,1,454,500", "xxxx", "Jane", "john@y.org", "Ann Poe", "','"):
        assert content not in reason
    assert "CSV Error on Line" in reason or "sniffing" in reason
    if "Original Line" in error:
        assert "the line (not shown: the file holds personal data)" in reason
