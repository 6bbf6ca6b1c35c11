"""What unit tests share that is not a fixture: in-memory stand-ins and harnesses (fixtures: tests/unit/conftest.py)."""
