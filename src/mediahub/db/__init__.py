"""The metadata store: SQLAlchemy models, sessions, repositories, migrations."""
