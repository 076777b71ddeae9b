"""callflow's database: SQLAlchemy 2 models, Alembic migrations, repository functions."""
