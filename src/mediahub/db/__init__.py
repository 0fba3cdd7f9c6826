"""The metadata store: SQLAlchemy models, sessions, repositories, migrations.

Importing any of it installs the usage tracking on every `Session` (usage_tracking.py), so no
session of this process writes media rows without keeping `media_usage` in step.
"""

from mediahub.db.usage_tracking import install

install()
