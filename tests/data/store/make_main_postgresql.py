"""Write main-a6f82d4.postgresql.sql: the results store of commit a6f82d4 (before migrations) for
PostgreSQL: its tables as that commit's ``metadata`` compiles them for PostgreSQL, and the rows of
main-a6f82d4.sqlite. Run it with that commit's code first on the path (see README.md here)."""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from harness.store import results_store  # the a6f82d4 module (PYTHONPATH)

HERE = Path(__file__).resolve().parent
assert not hasattr(results_store, "ensure_schema") and "seed" not in results_store.runs.c, "run this with the code of a6f82d4 first on the path"
dialect = postgresql.dialect()
lines = ["-- the results store of commit a6f82d4 (tables made by metadata.create_all, no version table); made by make_main_postgresql.py"]
for table in results_store.metadata.sorted_tables:
    lines.append(str(CreateTable(table).compile(dialect=dialect)).strip() + ";")
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        lines.append(str(CreateIndex(index).compile(dialect=dialect)).strip() + ";")
source = sa.create_engine(f"sqlite:///{HERE / 'main-a6f82d4.sqlite'}")
with source.connect() as conn:
    for table in results_store.metadata.sorted_tables:
        for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns)):
            stmt = sa.insert(table).values(**row._mapping)
            lines.append(str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True})) + ";")
lines.append("SELECT setval(pg_get_serial_sequence('metrics', 'id'), (SELECT max(id) FROM metrics));")
(HERE / "main-a6f82d4.postgresql.sql").write_text("\n".join(lines) + "\n", encoding="utf-8")
print(f"wrote {HERE / 'main-a6f82d4.postgresql.sql'}", file=sys.stderr)
