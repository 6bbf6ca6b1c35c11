"""Key access: owner, workspace, public, share links, private."""
import pytest

from framelog.processors.access import Viewer, Visibility, key_access_reason, may_receive_key

OWNER = Viewer("alice", frozenset({"ws-1"}))
COLLEAGUE = Viewer("bob", frozenset({"ws-1", "ws-2"}))
STRANGER = Viewer("mallory", frozenset({"ws-9"}))


@pytest.mark.parametrize("visibility, viewer, token_ok, allowed", [
    # public: everyone
    (Visibility.PUBLIC, None, False, True),
    (Visibility.PUBLIC, STRANGER, False, True),
    (Visibility.PUBLIC, OWNER, False, True),
    # share_link: owner, workspace, or a valid token
    (Visibility.SHARE_LINK, OWNER, False, True),
    (Visibility.SHARE_LINK, COLLEAGUE, False, True),
    (Visibility.SHARE_LINK, STRANGER, False, False),
    (Visibility.SHARE_LINK, STRANGER, True, True),
    (Visibility.SHARE_LINK, None, True, True),
    (Visibility.SHARE_LINK, None, False, False),
    # private: owner and workspace only, tokens ignored
    (Visibility.PRIVATE, OWNER, False, True),
    (Visibility.PRIVATE, COLLEAGUE, False, True),
    (Visibility.PRIVATE, STRANGER, True, False),
    (Visibility.PRIVATE, None, True, False),
    (Visibility.PRIVATE, None, False, False),
])
def test_key_access_matrix(visibility, viewer, token_ok, allowed):
    assert may_receive_key(visibility, "alice", "ws-1", viewer, token_ok) is allowed


def test_string_visibility_is_accepted():
    assert may_receive_key("public", "alice", None, None, False)
    assert not may_receive_key("private", "alice", None, None, True)
    with pytest.raises(ValueError, match="secret"):
        may_receive_key("secret", "alice", None, None, False)


def test_reasons():
    assert key_access_reason("private", "alice", "ws-1", OWNER, False) == "owner"
    assert key_access_reason("private", "alice", "ws-1", COLLEAGUE, False) == "workspace"
    assert key_access_reason("public", "alice", "ws-1", STRANGER, False) == "public"
    assert key_access_reason("share_link", "alice", "ws-1", STRANGER, True) == "share_token"
    assert key_access_reason("share_link", "alice", "ws-1", STRANGER, False) is None


def test_empty_owner_or_workspace_never_match():
    nobody = Viewer("", frozenset({""}))
    assert not may_receive_key("private", "", "", nobody, False)
    assert not may_receive_key("private", "alice", None, Viewer("bob"), False)


def test_workspace_without_video_workspace():
    assert not may_receive_key("private", "alice", None, COLLEAGUE, False)
