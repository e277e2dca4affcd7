"""The team deployment's local servers: PostgreSQL (and Redis), started on 127.0.0.1 under <data>/team/."""
