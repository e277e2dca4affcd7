"""Governed reads for tests: as the catalog principal of a role (and its row filter's attributes), with a token
issued to it in the test's data folder, through the same entry point as `governance query`."""

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
