"""Forward-only SQL migrations: ``migrations/NNNN_slug.sql``, one transaction each, checksummed.

An applied migration whose file changed since is refused: landed files are never edited.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from backend.core.db import Conn

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x6B757A6574  # "kuzet": one migrator at a time

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"


class MigrationError(Exception):
    """A migration file is missing, edited after it was applied, or misnamed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_slug.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


async def migrate(conn: Conn, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply pending migrations in order; return those applied. Refuses edited or vanished files."""
    migrations = discover(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(CREATE_LEDGER)
        applied = {r["version"]: r for r in await conn.fetch(SELECT_APPLIED)}
        by_version = {m.version: m for m in migrations}
        for version, row in applied.items():
            migration = by_version.get(version)
            if migration is None:
                raise MigrationError(f"migration {version:04d}_{row['name']} was applied but its file is gone")
            if migration.checksum != row["checksum"]:
                raise MigrationError(
                    f"migration {version:04d}_{migration.name}.sql was edited after it was applied "
                    f"(checksum {row['checksum'][:12]} in the database, {migration.checksum[:12]} on disk); "
                    "add a new migration instead"
                )
        done: list[Migration] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(INSERT_APPLIED, migration.version, migration.name, migration.checksum)
            done.append(migration)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
