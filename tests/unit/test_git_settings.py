"""The member's own git settings: per-host https credentials, the retired keys, and the
dataset URLs the shared registry accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from maomao_cli import config, validation
from maomao_cli.errors import BadInput, ConfigError
from maomao_cli.gitmodels import HttpsCredential
from maomao_cli.keys import Keys
from maomao_cli.services.registry import DatasetSpec, Registry
from maomao_cli.store.memory import MemoryStore


def load(tmp_path: Path, text: str, **env: str) -> config.Settings:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return config.load(str(path), env=env)


def test_credentials_are_per_host(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[git]\nca_file = "/etc/ca.pem"\n'
        '[git.credentials."Git.Example.org:443"]\nusername = "bot"\npassword = "pw"\n'
        '[git.credentials."127.0.0.1:8443"]\nusername = "other"\n',
        MAOMAO_GIT_PASSWORD="from-env",
    )
    assert settings.git.credentials == {
        "git.example.org": HttpsCredential("bot", "pw"),
        "127.0.0.1:8443": HttpsCredential("other", "from-env"),
    }
    assert settings.git.ca_file == "/etc/ca.pem" and settings.git.allow_local is False
    assert "pw" not in repr(settings) and "from-env" not in repr(settings)
    shown = config.as_dict(settings)["git"]["credentials"]
    assert shown["git.example.org"] == {"username": "bot", "password": "********"}
    assert "from-env" not in repr(config.as_dict(settings))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[git.credentials."-x"]\nusername = "u"\n', "expected a host name"),
        ('[git.credentials."h:99999"]\nusername = "u"\n', "expected a host name"),
        ('[git.credentials."h/x"]\nusername = "u"\n', "expected a host name"),
        ('[git.credentials."h"]\npassword = "p"\n', "username must be"),
        ('[git.credentials."h"]\nusername = "a:b"\n', "username must be"),
        ('[git.credentials."h"]\nusername = "u"\ntoken = "t"\n', "must be a table"),
        ("[git]\ncredentials = 5\n", "must be tables"),
        ("[git]\nallow_local = 'yes'\n", "[git] allow_local"),
    ],
)
def test_bad_credentials_are_refused_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match="git") as caught:
        load(tmp_path, text)
    assert message in caught.value.message


@pytest.mark.parametrize("key", ["https_username", "https_password"])
def test_the_old_keys_are_refused_with_the_new_form(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f'[git]\n{key} = "secret-value"\n')
    message = caught.value.message
    assert f"[git] {key} is no longer read" in message
    assert '[git.credentials."git.example.org"]' in message
    assert "secret-value" not in message and "\n" not in message


@pytest.mark.parametrize(
    "url",
    ["/root/secrets", "./here", "~/repo", "file:///etc", "FILE:///etc"],
)
def test_the_registry_takes_remote_urls_only_unless_the_member_allows(url: str) -> None:
    store = MemoryStore()
    with pytest.raises(BadInput) as caught:
        Registry(store, Keys("/m")).add_dataset(DatasetSpec(name="d", url=url))
    assert "must be remote" in caught.value.message
    assert "allow_local" in (caught.value.hint or "")
    assert list(store.scan("/m")) == []
    dataset, _ = Registry(store, Keys("/m"), allow_local_urls=True).add_dataset(
        DatasetSpec(name="d", url=url)
    )
    assert dataset.url == url


@pytest.mark.parametrize(
    "url",
    [
        "ssh://-oProxyCommand=id@host/x",
        "ssh://git@-oProxyCommand=id/x",
        "ssh://us%2Der@host/x",
        "ssh://a b@host/x",
        "ssh://u$(id)@host/x",
        "ssh://u@ho;st/x",
        "-oProxyCommand=id@host:x",
        "git@-host:x",
        ".u@host:x",
        "git://-host/x",
        "https://h:0/x",
    ],
)
def test_ssh_users_and_hosts_are_names_never_options(url: str) -> None:
    with pytest.raises(BadInput, match="must be a git URL"):
        validation.git_url(url, allow_local=False)


def test_a_password_in_a_url_is_refused_and_not_echoed() -> None:
    for url in ("https://bot:hunter2@git.example.org/x.git", "ssh://git:hunter2@h/x"):
        with pytest.raises(BadInput) as caught:
            validation.git_url(url)
        assert "password" in caught.value.message
        assert "hunter2" not in caught.value.message + (caught.value.hint or "")


@pytest.mark.parametrize(
    "url",
    [
        "https://git.example.org/lab/obs.git",
        "https://bot@git.example.org/lab/obs.git",
        "ssh://git@git.example.org:2222/lab/obs.git",
        "ssh://[::1]/srv/x",
        "git@github.com:lab/obs.git",
        "git://127.0.0.1:9418/x.git",
        "http://mirror.example.org/x",
    ],
)
def test_remote_urls_are_accepted(url: str) -> None:
    assert validation.git_url(url, allow_local=False) == url
