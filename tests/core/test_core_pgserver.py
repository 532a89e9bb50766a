"""The PostgreSQL the server tests run on starts, serves loopback, and gives the locking that
several server replicas rely on (a job that must run once takes an advisory lock)."""

from __future__ import annotations

import pytest

psycopg = pytest.importorskip("psycopg")


def test_fresh_database_and_advisory_lock(postgres_dsn):
    with psycopg.connect(postgres_dsn, autocommit=True) as a, psycopg.connect(postgres_dsn, autocommit=True) as b:
        assert a.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
        assert a.execute("SELECT pg_try_advisory_lock(42)").fetchone()[0] is True
        assert b.execute("SELECT pg_try_advisory_lock(42)").fetchone()[0] is False
        a.execute("SELECT pg_advisory_unlock(42)")
        assert b.execute("SELECT pg_try_advisory_lock(42)").fetchone()[0] is True


def test_unique_constraint_under_concurrent_inserts(postgres_dsn):
    """Two writers inserting the same id: the database keeps one (what duplicate uploads to two
    replicas rely on)."""
    with psycopg.connect(postgres_dsn, autocommit=True) as a, psycopg.connect(postgres_dsn, autocommit=True) as b:
        a.execute("CREATE TABLE pairs (id text PRIMARY KEY)")
        inserted = [
            conn.execute("INSERT INTO pairs VALUES ('x') ON CONFLICT DO NOTHING").rowcount for conn in (a, b)
        ]
        assert inserted == [1, 0]
        assert a.execute("SELECT count(*) FROM pairs").fetchone()[0] == 1
