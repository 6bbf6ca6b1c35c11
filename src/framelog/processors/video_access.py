"""Per-video access state folded from the log, and the decisions made from it (no I/O).

Where the state lives, and why the log: a video's policy (owner, workspace,
visibility) is an ``AccessPolicy`` event and each share link issued or
revoked a ``ShareLink`` event, both on ``video.access`` (kept forever, not
compacted); deletions are ``VideoDeleted`` on ``video.uploads``; what was
published is ``AssetPublished`` on ``video.assets``. Every API replica
replays these into a ``VideoCatalog`` (``streams.catalog``) at start, so a
restart rebuilds exactly the same state, and replicas agree without a
database. ``video.access`` is not compacted because a compacted topic keeps
only the latest record per key (the video id): a later policy change would
erase an earlier revocation. A revocation is a fact that only ever adds to a
set, so two replicas revoking at once cannot lose each other's write, which a
read-modify-write S3 object could.

Decisions:

* ``stream_access``: may this viewer (signed-in or anonymous, with or without
  a share token) play the video? Built on ``processors.access`` (the
  visibility rules) and ``processors.tokens`` (share token checks, with the
  folded revocation list).
* ``grant_viewer`` / ``parse_grant_viewer``: the ``viewer`` claim of a
  playback (key) grant says on what basis it was issued -- the signed-in
  user, the share token id, or both -- so the key endpoint can re-check that
  basis on every key request (a revoked link or a video made private stops
  handing out keys at once, not when the grant expires).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from framelog.processors.access import Viewer, Visibility, key_access_reason
from framelog.processors.tokens import ShareClaims, TokenError, verify_share_token

GRANT_SHARE_SEPARATOR = "+"      # never in a user id ([A-Za-z0-9_.@:-]) nor in a token id ([A-Za-z0-9_-])

# Visibilities ordered by who may watch: moving down this order takes access away from someone.
_OPENNESS = {Visibility.PRIVATE: 0, Visibility.SHARE_LINK: 1, Visibility.PUBLIC: 2}


@dataclass(frozen=True)
class VideoPolicy:
    owner_id: str
    workspace_id: str | None
    visibility: Visibility


@dataclass
class ShareLinkState:
    token_id: str
    issued_at_ms: int | None = None
    expires_at_ms: int | None = None
    revoked_at_ms: int | None = None
    issued_by: str = ""


@dataclass
class VideoEntry:
    """What the log says about one video's access and published assets."""
    video_id: str
    policy: VideoPolicy | None = None               # the latest AccessPolicy
    uploaded_by: str | None = None                  # UploadCompleted.owner_id: the owner when no policy exists
    share_links: dict[str, ShareLinkState] = field(default_factory=dict)
    deleted_at_ms: int | None = None
    asset: dict[str, Any] | None = None             # the latest AssetPublished record

    @property
    def deleted(self) -> bool:
        return self.deleted_at_ms is not None

    def revoked(self, token_id: str) -> bool:
        link = self.share_links.get(token_id)
        return link is not None and link.revoked_at_ms is not None

    def effective_policy(self, default_visibility: Visibility | str) -> VideoPolicy | None:
        """The policy in force: the latest AccessPolicy, else the uploader with the default visibility."""
        if self.policy is not None:
            return self.policy
        if self.uploaded_by:
            return VideoPolicy(self.uploaded_by, None, Visibility.parse(default_visibility))
        return None


def _millis(value: Any) -> int | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    return int(value)


class CatalogFold:
    """Folds AccessPolicy, ShareLink, UploadCompleted, VideoDeleted and AssetPublished records (in log order)."""

    def __init__(self) -> None:
        self.videos: dict[str, VideoEntry] = {}

    def _entry(self, video_id: str) -> VideoEntry:
        entry = self.videos.get(video_id)
        if entry is None:
            entry = self.videos[video_id] = VideoEntry(video_id)
        return entry

    def apply(self, name: str, record: Mapping[str, Any]) -> bool:
        """Fold one record of type ``name``; False when it is of no interest here."""
        video_id = record.get("video_id")
        if not video_id:
            return False
        if name == "AccessPolicy":
            if record.get("visibility") not in {v.value for v in Visibility}:
                return False                                   # 'unknown': a newer writer's symbol
            self._entry(video_id).policy = VideoPolicy(record["owner_id"], record.get("workspace_id") or None,
                                                       Visibility(record["visibility"]))
        elif name == "ShareLink":
            entry, jti = self._entry(video_id), record["token_id"]
            link = entry.share_links.setdefault(jti, ShareLinkState(jti))
            if record.get("action") == "issued":
                link.issued_at_ms = _millis(record.get("event_time"))
                link.expires_at_ms = _millis(record.get("expires_at"))
                link.issued_by = record.get("actor") or ""
            elif record.get("action") == "revoked":
                at = _millis(record.get("event_time"))
                link.revoked_at_ms = at if link.revoked_at_ms is None else min(link.revoked_at_ms, at or 0)
            else:
                return False
        elif name == "UploadCompleted":
            self._entry(video_id).uploaded_by = record.get("owner_id") or None
        elif name == "VideoDeleted":
            entry = self._entry(video_id)
            at = _millis(record.get("event_time")) or 0
            entry.deleted_at_ms = at if entry.deleted_at_ms is None else min(entry.deleted_at_ms, at)
        elif name == "AssetPublished":
            self._entry(video_id).asset = dict(record)
        else:
            return False
        return True

    def get(self, video_id: str) -> VideoEntry | None:
        entry = self.videos.get(video_id)
        return copy.deepcopy(entry) if entry is not None else None


# ------------------------------------------------------------ decisions

@dataclass(frozen=True)
class AccessDecision:
    """``reason`` (owner / workspace / public / share_token) when allowed, else ``refusal`` says why."""
    reason: str | None
    refusal: str = ""
    share: ShareClaims | None = None

    @property
    def allowed(self) -> bool:
        return self.reason is not None


def check_share_token(entry: VideoEntry, token: str | None, *, secret: bytes,
                      now: float) -> tuple[ShareClaims | None, str]:
    """(claims, "") for a valid share token of this video, else (None, why it was refused or "")."""
    if not token:
        return None, ""
    try:
        return verify_share_token(token, secret=secret, now=now, video_id=entry.video_id,
                                  revoked=entry.revoked), ""
    except TokenError as exc:
        return None, f"share token refused: {exc.reason}"


def stream_access(entry: VideoEntry, policy: VideoPolicy, viewer: Viewer | None, share_token: str | None, *,
                  secret: bytes, now: float) -> AccessDecision:
    """May ``viewer`` (None: anonymous) play the video, possibly through ``share_token``?"""
    claims, why = check_share_token(entry, share_token, secret=secret, now=now)
    reason = key_access_reason(policy.visibility, policy.owner_id, policy.workspace_id, viewer, claims is not None)
    if reason is not None:
        return AccessDecision(reason, share=claims if reason == "share_token" else None)
    if why:
        return AccessDecision(None, why)
    if claims is not None:                                     # a valid token, but the video is private
        return AccessDecision(None, "the video is private: share links are disabled")
    if viewer is None:
        return AccessDecision(None, "the video is not public: sign in or use a share link")
    return AccessDecision(None, f"viewer {viewer.user_id} may not watch this video")


def grant_viewer(viewer: Viewer | None, decision: AccessDecision) -> str | None:
    """The ``viewer`` claim of a key grant: ``user``, ``+jti``, ``user+jti`` or None (anonymous, public)."""
    jti = decision.share.token_id if decision.share is not None else None
    user = viewer.user_id if viewer is not None else ""
    if jti is None:
        return user or None
    return f"{user}{GRANT_SHARE_SEPARATOR}{jti}"


def parse_grant_viewer(claim: str | None) -> tuple[str | None, str | None]:
    """(user id, share token id) of a grant's ``viewer`` claim."""
    if not claim:
        return None, None
    user, sep, jti = claim.partition(GRANT_SHARE_SEPARATOR)
    return user or None, (jti or None) if sep else None


def key_access(entry: VideoEntry, policy: VideoPolicy, grant_claim: str | None,
               viewer: Viewer | None) -> AccessDecision:
    """Re-check, at key time, the basis a grant was issued on.

    A grant bound to a user needs that user's viewer token with the request
    (``viewer``); its share part, if any, must not have been revoked. Then the
    visibility rules decide again with the policy in force now.
    """
    user, jti = parse_grant_viewer(grant_claim)
    if user is not None and (viewer is None or viewer.user_id != user):
        return AccessDecision(None, "the grant is bound to another viewer (send that viewer's token)")
    basis = viewer if user is not None else None
    share_ok = jti is not None and jti in entry.share_links and not entry.revoked(jti)
    reason = key_access_reason(policy.visibility, policy.owner_id, policy.workspace_id, basis, share_ok)
    if reason is not None:
        return AccessDecision(reason)
    if jti is not None and entry.revoked(jti):
        return AccessDecision(None, "the share link was revoked")
    return AccessDecision(None, "access to this video was withdrawn")


def narrows_access(old: VideoPolicy | None, new: VideoPolicy) -> bool:
    """Does moving from ``old`` to ``new`` take access away from anyone (so edge caches are purged)?"""
    if old is None:
        return False
    if _OPENNESS[new.visibility] < _OPENNESS[old.visibility]:
        return True
    return old.workspace_id is not None and new.workspace_id != old.workspace_id


def with_changes(policy: VideoPolicy, *, visibility: Visibility | None = None,
                 workspace_id: str | None | type[Ellipsis] = ...) -> VideoPolicy:
    """``policy`` with a new visibility and/or workspace (``...``: keep the workspace)."""
    out = policy
    if visibility is not None:
        out = replace(out, visibility=visibility)
    if workspace_id is not ...:
        out = replace(out, workspace_id=workspace_id)
    return out
