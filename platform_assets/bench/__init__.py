"""`make bench`: what the platform's orchestration, checks, audits and lineage cost against the same work done
by a bare DuckDB + scikit-learn script, at growing data scale. Not part of the platform, not part of `make test`."""
