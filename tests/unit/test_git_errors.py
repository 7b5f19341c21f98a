"""How the git adapter words failures: one line, the right cause, whatever the port."""

from __future__ import annotations

import pytest
import urllib3.exceptions as ue
from dulwich.errors import GitProtocolError

from maomao_cli.adapters.git.remotes import parse_url
from maomao_cli.adapters.git.translate import translated
from maomao_cli.errors import GitError
from maomao_cli.gitmodels import GitAuth


def _wrapped(text: str, cause: BaseException | None) -> GitProtocolError:
    """What dulwich raises: its own error around urllib3's, text copied."""
    err = GitProtocolError(text)
    err.__cause__ = cause
    return err


POOL = "HTTPConnectionPool(host='127.0.0.1', port=40173)"
CASES = [
    # A silent server on a port holding "401" is a timeout, not an authentication failure.
    (
        _wrapped(
            f"{POOL}: Max retries exceeded (Caused by ReadTimeoutError(...))",
            ue.MaxRetryError(None, "/x.git/info/refs", ue.ReadTimeoutError(None, "/", "t")),  # type: ignore[arg-type]
        ),
        "timed out",
    ),
    # urllib3 2 makes a refused connection a ConnectTimeoutError too; it is still refused.
    (
        _wrapped(
            f"{POOL}: Max retries exceeded (Caused by NewConnectionError(...))",
            ue.MaxRetryError(
                None,  # type: ignore[arg-type]
                "/x.git/info/refs",
                ue.NewConnectionError(None, "[Errno 111] Connection refused"),  # type: ignore[arg-type]
            ),
        ),
        "connection refused",
    ),
    (
        _wrapped("unexpected http resp 401 for http://127.0.0.1:40173/x.git", None),
        "authentication failed",
    ),
    (_wrapped("unexpected http resp 403 for http://h/x.git", None), "authentication failed"),
    (_wrapped("unexpected http resp 404 for http://h:4040/x.git", None), "no git repository"),
    (_wrapped("unexpected http resp 500 for http://h:40173/x.git", None), "resp 500"),
]


@pytest.mark.parametrize(("exc", "expected"), CASES, ids=[c[1] for c in CASES])
def test_http_failures_are_named_by_their_cause(exc: Exception, expected: str) -> None:
    remote = parse_url("http://127.0.0.1:40173/x.git")
    with pytest.raises(GitError) as err, translated("clone", remote, GitAuth(), 1.0):
        raise exc
    assert expected in err.value.message
    assert "\n" not in err.value.message
    assert err.value.message.startswith("clone http://127.0.0.1:40173/x.git: ")


def test_an_invalid_port_is_a_git_error_not_a_traceback() -> None:
    with pytest.raises(GitError) as err:
        parse_url("git://example.org:99999/x.git")
    assert err.value.message == "bad git URL git://example.org/x.git: invalid port"
