"""The results store's schema, made and upgraded by migration (Alembic scripts in ``versions/``,
run from code: no alembic.ini; the version is kept in Alembic's table ``alembic_version``).

Contract of ``ensure_schema(engine, url)`` (called when a ``ResultsStore`` opens):
- a database at the newest revision (``HEAD``) is left alone after one read of its version;
- an empty database gets the whole schema; a database made before migrations (tables ``runs`` and
  ``metrics``, no version table: releases up to the one that added this module) is stamped with the
  first revision (``BASELINE``, which is that schema) and upgraded in place, keeping every row;
- the upgrade happens once however many processes open a new database at the same moment: it runs
  in one transaction that first takes a lock (PostgreSQL: ``pg_advisory_xact_lock``; SQLite: ``BEGIN
  IMMEDIATE``, the file's write lock) and reads the version again inside it;
- ``upgrade=False`` (readers that must not write, e.g. the facility board, which may run newer
  software than the stations that record into a shared database): nothing is changed; an older
  schema is read as it is, an empty database raises ``UserError``;
- a database at a revision this code does not know (made by newer software) raises
  ``connection.Incompatible`` (a ``UserError``: "upgrade microscope-qc-harness") and is not touched.
Database errors propagate as SQLAlchemy errors (the caller words them, ``connection.failure``).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from harness.common.errors import UserError
from harness.store.connection import Incompatible, shown, writer

HERE = Path(__file__).resolve().parent
BASELINE = "0001_main"
ADVISORY_KEY = 0x6D71635F7363  # "mqc_sc": the schema lock of the results store (PostgreSQL advisory lock id)
SCRIPTS = ScriptDirectory(str(HERE), version_locations=[str(HERE / "versions")])
HEAD = SCRIPTS.get_current_head()
KNOWN = {rev.revision for rev in SCRIPTS.walk_revisions()}


def current_revision(conn: sa.Connection) -> str | None:
    """The database's revision (None: no version table, or an empty one)."""
    return MigrationContext.configure(conn).get_current_revision()


def _check_known(revision: str | None, url: str) -> None:
    if revision is not None and revision not in KNOWN:
        raise Incompatible(f"results database {shown(url)}: its schema is at revision {revision!r}, made by a newer microscope-qc-harness "
                        f"(this one knows up to {HEAD!r}); upgrade it: pip install -U microscope-qc-harness")


def _config(conn: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = conn
    return cfg


def ensure_schema(engine: sa.Engine, url: str, upgrade: bool = True) -> str | None:
    """Bring the database to ``HEAD`` (see the module's contract); the revision it was at."""
    with engine.connect() as conn:
        found = current_revision(conn)
        empty = found is None and not sa.inspect(conn).has_table("runs")
    if found == HEAD:
        return found
    _check_known(found, url)
    if not upgrade:
        if empty:
            raise UserError(f"results database {shown(url)}: holds no QC results yet (run or import runs first)")
        return found
    with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_KEY)))
        found = current_revision(conn)  # again, inside the lock: another process may have done it
        if found == HEAD:
            return found
        _check_known(found, url)
        cfg = _config(conn)
        if found is None and sa.inspect(conn).has_table("runs"):
            command.stamp(cfg, BASELINE)  # made before migrations
        command.upgrade(cfg, "head")
    return found
