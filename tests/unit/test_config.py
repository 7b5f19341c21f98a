"""Settings: flag > environment > file > defaults; unknown or ill-typed settings refused."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from maomao_cli import config
from maomao_cli.config import DEFAULT_ENDPOINT, Settings
from maomao_cli.errors import BadInput, ConfigError


def write(tmp_path: Path, text: str, name: str = "config.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults_without_any_file(tmp_path: Path) -> None:
    # XDG_CONFIG_HOME points at an empty folder, so no default file is read.
    settings = config.load(env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert settings.source is None
    assert settings.etcd.endpoints == (DEFAULT_ENDPOINT,)
    assert settings.etcd.prefix == "/maomao"
    assert 0 < settings.etcd.timeout <= 5
    assert settings.etcd.user is None and settings.etcd.password is None


def test_file_overrides_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[etcd]\nendpoints = ["10.0.0.1:2379", "10.0.0.2:2379"]\nprefix = "/lab"\ntimeout = 2\n'
        '[data]\nimportdir = "/srv/maomao"\n'
        '[docker]\nnetwork = "none"\nmemory = "1g"\n'
        '[worker]\nmember = "lab-a"\nlabels = { region = "eu" }\nmax_parallel = 2\n',
    )
    settings = config.load(path, env={})
    assert settings.source == path
    assert settings.etcd.endpoints == ("10.0.0.1:2379", "10.0.0.2:2379")
    assert settings.etcd.prefix == "/lab"
    assert settings.etcd.timeout == 2.0 and isinstance(settings.etcd.timeout, float)
    assert settings.data.import_path == Path("/srv/maomao")
    assert settings.data.state_path == Path("/srv/state")
    assert settings.docker.network == "none" and settings.docker.memory == "1g"
    assert settings.worker.labels == {"region": "eu"}
    assert settings.member == "lab-a"
    # Untouched keys keep their defaults.
    assert settings.docker.pids == Settings().docker.pids


def test_environment_overrides_file_and_flag_overrides_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[etcd]\nendpoints = ["file:1"]\nprefix = "/file"\n')
    env = {"MAOMAO_ETCD_ENDPOINTS": "env:2", "MAOMAO_ETCD_PREFIX": "/env"}
    from_env = config.load(path, env=env)
    assert from_env.etcd.endpoints == ("env:2",)
    assert from_env.etcd.prefix == "/env"
    from_flag = config.load(path, endpoints="flag:3", prefix="/flag", env=env)
    assert from_flag.etcd.endpoints == ("flag:3",)
    assert from_flag.etcd.prefix == "/flag"


def test_maomao_config_names_the_file(tmp_path: Path) -> None:
    named = write(tmp_path, '[etcd]\nprefix = "/named"\n', "named.toml")
    explicit = write(tmp_path, '[etcd]\nprefix = "/explicit"\n', "explicit.toml")
    assert config.load(env={"MAOMAO_CONFIG": named}).etcd.prefix == "/named"
    # --config wins over MAOMAO_CONFIG.
    assert config.load(explicit, env={"MAOMAO_CONFIG": named}).etcd.prefix == "/explicit"


def test_default_file_under_xdg_config_home(tmp_path: Path) -> None:
    (tmp_path / "maomao").mkdir()
    write(tmp_path / "maomao", '[etcd]\nprefix = "/xdg"\n')
    settings = config.load(env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert settings.etcd.prefix == "/xdg"
    assert settings.source == str(tmp_path / "maomao" / "config.toml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:2379", ("127.0.0.1:2379",)),
        ("a:1,b:2", ("a:1", "b:2")),
        (" a:1 , b:2 ,", ("a:1", "b:2")),
        ("http://a:1,https://b:2", ("a:1", "b:2")),
        ("[::1]:2379", ("[::1]:2379",)),
    ],
)
def test_endpoints_from_the_environment(
    tmp_path: Path, text: str, expected: tuple[str, ...]
) -> None:
    settings = config.load(env={"MAOMAO_ETCD_ENDPOINTS": text, "XDG_CONFIG_HOME": str(tmp_path)})
    assert settings.etcd.endpoints == expected


@pytest.mark.parametrize("text", ["nohost", "a:", ":1", "a:0", "a:65536", "a:x", ",", "a:1,b"])
def test_bad_endpoints_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(BadInput, match="endpoint"):
        config.load(env={"MAOMAO_ETCD_ENDPOINTS": text, "XDG_CONFIG_HOME": str(tmp_path)})


def test_other_environment_variables(tmp_path: Path) -> None:
    env = {
        "XDG_CONFIG_HOME": str(tmp_path),
        "MAOMAO_ETCD_USER": "alice",
        "MAOMAO_ETCD_PASSWORD": "s3cret",
        "MAOMAO_IMPORTDIR": "/data/in",
        "MAOMAO_DOCKER_HOST": "unix:///run/d.sock",
        "MAOMAO_MEMBER": "node-7",
        "MAOMAO_GIT_PASSWORD": "gitpw",
        "MAOMAO_SERVE_TOKEN": "tok",
    }
    (tmp_path / "maomao").mkdir()
    (tmp_path / "maomao" / "config.toml").write_text(
        '[git.credentials."git.example.org"]\nusername = "bot"\n'
    )
    settings = config.load(env=env)
    assert (settings.etcd.user, settings.etcd.password) == ("alice", "s3cret")
    assert settings.data.importdir == "/data/in"
    assert settings.docker.host == "unix:///run/d.sock"
    assert settings.member == "node-7"
    assert settings.git.credentials["git.example.org"].password == "gitpw"
    assert settings.serve.token == "tok"


def test_bad_member_from_environment_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="MAOMAO_MEMBER"):
        config.load(env={"MAOMAO_MEMBER": "Not Valid", "XDG_CONFIG_HOME": str(tmp_path)})


@pytest.mark.parametrize("env", [{"MAOMAO_ETCD_PASSWORD": "pw"}, {"MAOMAO_ETCD_USER": "alice"}])
def test_user_and_password_go_together(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="user and password"):
        config.load(env={**env, "XDG_CONFIG_HOME": str(tmp_path)})


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[etdc]\nprefix = '/x'\n", "[etdc]"),
        ("[etcd]\nprefx = '/x'\n", "'prefx'"),
        ("[worker]\nmax_paralel = 2\n", "'max_paralel'"),
    ],
)
def test_unknown_section_or_key_refused_by_name(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        config.load(path, env={})
    assert named in caught.value.message
    assert path in caught.value.message
    assert caught.value.hint and "known" in caught.value.hint


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[etcd]\ntimeout = 'fast'\n", "[etcd] timeout"),
        ("[etcd]\ntimeout = true\n", "[etcd] timeout"),
        ("[etcd]\ntimeout = 0\n", "[etcd] timeout"),
        ("[etcd]\nendpoints = 2379\n", "[etcd] endpoints"),
        ("[etcd]\nendpoints = [2379]\n", "[etcd] endpoints"),
        ("[etcd]\nprefix = 'relative'\n", "[etcd] prefix"),
        ("[etcd]\nprefix = '/'\n", "[etcd] prefix"),
        ("[etcd]\nuser = 5\n", "[etcd] user"),
        ("[docker]\npids = 'many'\n", "[docker] pids"),
        ("[docker]\npids = -1\n", "[docker] pids"),
        ("[docker]\nmemory = '1k'\n", "[docker] memory"),
        ("[worker]\nmax_parallel = 0\n", "[worker] max_parallel"),
        ("[worker]\nmax_parallel = 1.5\n", "[worker] max_parallel"),
        ("[worker]\nlabels = 'region=eu'\n", "[worker] labels"),
        ("[worker]\nlabels = { Region = 'eu' }\n", "[worker] labels"),
        ("[worker]\nmember = 'Bad Name'\n", "[worker] member"),
        ("[git]\ntrust_new_hosts = 'yes'\n", "[git] trust_new_hosts"),
        ("[spikes]\nsensitivity = 0\n", "[spikes] sensitivity"),
        ("[spikes]\nmethod = 'magic'\n", "[spikes] method"),
        ("etcd = 5\n", "[etcd]"),
    ],
)
def test_wrong_types_refused(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BadInput) as caught:
        config.load(path, env={})
    assert named in caught.value.message


def test_bad_toml_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[etcd\nprefix = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(path, env={})


def test_missing_file_refused(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="does not exist") as caught:
        config.load(env={"MAOMAO_CONFIG": missing})
    assert missing in caught.value.message


def test_as_dict_masks_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[etcd]\nuser = "alice"\npassword = "etcd-pw"\n'
        '[git.credentials."h"]\nusername = "u"\npassword = "git-pw"\n'
        '[serve]\ntoken = "serve-token"\n',
    )
    settings = config.load(path, env={})
    shown = config.as_dict(settings)
    text = repr(shown)
    for secret in ("etcd-pw", "git-pw", "serve-token"):
        assert secret not in text
    assert shown["etcd"]["password"] == "********"
    assert shown["git"]["credentials"]["h"] == {"username": "u", "password": "********"}
    assert shown["serve"]["token"] == "********"
    assert shown["etcd"]["user"] == "alice"  # not a secret
    assert shown["source"] == path
    assert shown["etcd"]["endpoints"] == [DEFAULT_ENDPOINT]
    # Unset secrets stay visibly unset rather than masked.
    defaults = config.load(env={"XDG_CONFIG_HOME": str(tmp_path / "none")})
    assert config.as_dict(defaults)["etcd"]["password"] is None
    assert config.as_dict(settings, mask=False)["etcd"]["password"] == "etcd-pw"


def test_as_dict_names_every_section() -> None:
    shown = config.as_dict(Settings())
    assert set(shown) == {"source", "etcd", "data", "docker", "worker", "spikes", "git", "serve"}
    assert shown["data"]["statedir"]  # resolved, never None
    assert shown["worker"]["member"]


REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.toml"


def test_repository_config_loads_and_holds_the_defaults(tmp_path: Path) -> None:
    shown = config.as_dict(config.load(str(REPO_CONFIG), env={}))
    defaults = config.as_dict(config.load(env={"XDG_CONFIG_HOME": str(tmp_path)}))
    for section in ("etcd", "docker", "worker", "spikes", "git", "serve"):
        assert shown[section] == defaults[section], section
    assert Path(shown["data"]["importdir"]).expanduser().name == "data"


def test_repository_config_names_every_key() -> None:
    text = REPO_CONFIG.read_text()
    sections = re.split(r"^\[(\w+)\]$", text, flags=re.MULTILINE)
    documented = {
        name: set(re.findall(r"^#? ?(\w+) = ", body, flags=re.MULTILINE))
        for name, body in zip(sections[1::2], sections[2::2], strict=True)
    }
    settings = Settings()
    for section in documented.keys() | {
        "etcd",
        "data",
        "docker",
        "worker",
        "spikes",
        "git",
        "serve",
    }:
        known = {f.name for f in fields(getattr(settings, section))}
        assert documented.get(section) == known, section


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2.5", 2.5), ("1", 1.0), ("0", None), ("-1", None), ('"fast"', None), ("nan", None)],
)
def test_max_clock_offset_is_checked_when_the_config_loads(
    tmp_path: Path, value: str, expected: float | None
) -> None:
    path = write(tmp_path, f"[worker]\nmax_clock_offset = {value}\n")
    if expected is not None:
        assert config.load(path, env={}).worker.max_clock_offset == expected
        return
    with pytest.raises(ConfigError, match=r"\[worker\] max_clock_offset"):
        config.load(path, env={})


def test_max_clock_offset_defaults_to_one_second(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, ""), env={}).worker.max_clock_offset == 1.0
