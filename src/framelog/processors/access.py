"""Who may receive a video's AES-128 HLS key (the key endpoint's decision).

Visibility:
    public      anyone, signed in or not;
    share_link  the owner, members of the video's workspace, and anyone
                presenting a valid share token for this video;
    private     the owner and members of the video's workspace only; share
                tokens are ignored (making a video private disables its links).

The share token's validity (signature, expiry, video, revocation) is checked
by ``framelog.processors.tokens.verify_share_token`` before this is asked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Visibility(str, Enum):
    PUBLIC = "public"
    PRIVATE = "private"
    SHARE_LINK = "share_link"

    @classmethod
    def parse(cls, value: Visibility | str) -> Visibility:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown visibility {value!r}; expected one of "
                             f"{[v.value for v in cls]}") from None


@dataclass(frozen=True)
class Viewer:
    """A signed-in viewer and the workspaces they belong to."""
    user_id: str
    workspaces: frozenset[str] = field(default_factory=frozenset)


def _is_owner(owner: str, viewer: Viewer | None) -> bool:
    return viewer is not None and bool(owner) and viewer.user_id == owner


def _in_workspace(workspace: str | None, viewer: Viewer | None) -> bool:
    return viewer is not None and bool(workspace) and workspace in viewer.workspaces


def key_access_reason(visibility: Visibility | str, owner: str, workspace: str | None,
                      viewer: Viewer | None, share_token_valid: bool) -> str | None:
    """Why access is granted (``owner``/``workspace``/``public``/``share_token``), or ``None``."""
    vis = Visibility.parse(visibility)
    if _is_owner(owner, viewer):
        return "owner"
    if _in_workspace(workspace, viewer):
        return "workspace"
    if vis is Visibility.PUBLIC:
        return "public"
    if vis is Visibility.SHARE_LINK and share_token_valid:
        return "share_token"
    return None


def may_receive_key(visibility: Visibility | str, owner: str, workspace: str | None,
                    viewer: Viewer | None, share_token_valid: bool) -> bool:
    """``viewer`` is ``None`` for an anonymous request."""
    return key_access_reason(visibility, owner, workspace, viewer, share_token_valid) is not None
