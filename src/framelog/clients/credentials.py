"""The bearer token a framelog command sends to the API.

``FRAMELOG_TOKEN`` when set (a token an operator or identity provider handed
out); otherwise, against the local stack, one minted from the local keyring
(``processors.identity``): whoever can read the keyring can sign any token, so
this adds no power the caller did not already have.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from framelog.core.config import AuthConfig

TOKEN_ENV = "FRAMELOG_TOKEN"


def local_token(auth: AuthConfig, state_dir: Path, sub: str, scopes: Iterable[str],
                workspaces: Iterable[str] = ()) -> str:
    """``FRAMELOG_TOKEN``, else a token for ``sub`` with ``scopes`` signed with the local keyring
    (``config.auth, config.stack.state_dir``)."""
    given = os.environ.get(TOKEN_ENV, "").strip()
    if given:
        return given
    from framelog.processors.identity import Keyring, mint_token

    return mint_token(auth, Keyring(auth, state_dir),
                      sub, workspaces=workspaces, scopes=list(scopes))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
