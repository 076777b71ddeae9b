"""The standards ledger: the catalogue of the 149 rules and the generator of docs/standards.md.

Kept outside the pure core: it reads the code (the ``callflow.engine.rules`` registry, the
Policy's metadata) and the tests (their ``std`` marks, by AST, without running them).
"""
