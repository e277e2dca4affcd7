"""The team deployment's local servers: PostgreSQL, Redis and Celery workers, started on 127.0.0.1 under
<data>/team/ (`python -m platform_assets.team up|down|status`, `make team-up`; docs/team.md)."""
