"""Content versions of tables: the published version recorded on materializations and in the lineage."""

import duckdb

from platform_assets.metadata import table_version


def test_versions_follow_content_whatever_repeats_in_it():
    with duckdb.connect() as connection:
        connection.execute("CREATE TABLE snapshot AS SELECT * FROM (VALUES ('AA', 'American'), ('B6', 'JetBlue')) "
                           "t(carrier, name), (VALUES (DATE '2013-01-01'), (DATE '2013-01-02')) d(day)")
        connection.execute("CREATE TABLE renamed AS SELECT carrier, CASE carrier WHEN 'AA' THEN 'American "
                           "Airlines' ELSE name END AS name, day FROM snapshot")
        connection.execute("CREATE TABLE reordered AS SELECT * FROM snapshot ORDER BY day DESC, carrier DESC")
        versions = {table: table_version(connection, table) for table in ("snapshot", "renamed", "reordered")}
        one_day = table_version(connection, "snapshot", "day = '2013-01-01'")
    assert versions["snapshot"] == versions["reordered"]  # order-independent
    assert versions["snapshot"] != versions["renamed"]  # one changed value changes the version
    assert versions["snapshot"] != "4-0000000000000000"  # a snapshot repeated over two days does not cancel out
    assert one_day.startswith("2-") and one_day != versions["snapshot"]
