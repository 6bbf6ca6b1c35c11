"""What security tests share that is not a fixture (fixtures: tests/security/conftest.py).

The stack helpers (``wait_for``, ``running``) are the integration tier's,
``tests.integration.support``; clips are ``tests.media.support.clips``.
"""
