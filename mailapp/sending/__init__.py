"""The send floor: template sandbox, tokens, compose, ledger, relay, pipeline and the send loop. It
sits on models, errors and extensions only: no blueprint package, no request objects (see
tests/test_import_floors.py)."""
