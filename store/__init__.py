"""callflow's database: SQLAlchemy 2 models, Alembic migrations, repository functions.

Public surface: ``open_store`` and ``Store`` (here), the repository functions in
``callflow.store.repo``, the tables and value sets in ``callflow.store.models`` and
the agents' restart reads in ``callflow.store.agent_log``.
"""

from .db import Store, open_store

__all__ = ["Store", "open_store"]
