"""Column types the migrations share. Frozen: a migration must build the same schema
forever, so change nothing here; a new type for a new migration gets a new name."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# BIGINT ids, but SQLite only auto-increments INTEGER PRIMARY KEY.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# timestamptz on PostgreSQL; microsecond DATETIME on MariaDB (values are UTC).
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# Case-sensitive text on MariaDB, as on the other two databases.
MYSQL_TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
# A storage key: compared and sorted as bytes on PostgreSQL too (the C collation), as S3 lists keys.
OBJECT_KEY = sa.String(512).with_variant(sa.String(512, collation="C"), "postgresql")
