"""Tables for the pure checks of what users type."""

from __future__ import annotations

import pytest

from maomao_cli import validation
from maomao_cli.errors import BadInput, ExitStatus

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "value", ["a", "dummy", "0tool", "my-tool_2.v1", "a" * 63, "x.y", "a--b", "9"]
)
def test_name_accepts(value: str) -> None:
    assert validation.name(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "Bad/Name", "Upper", "-dash", ".dot", "_under", "a" * 64, "a b", "a/b", "..", "é", "a\n"],
)
def test_name_refuses_with_the_field_and_the_rule(value: str) -> None:
    with pytest.raises(BadInput) as caught:
        validation.name(value, "tool name")
    assert caught.value.exit_status == ExitStatus.BAD_INPUT
    assert "tool name" in caught.value.message
    assert validation.NAME_RULE in caught.value.message
    assert "\n" not in caught.value.message.replace(repr(value), "")


@pytest.mark.parametrize(
    "value",
    [
        "img",
        "alpine:3.19",
        "ghcr.io/a/b:1.2",
        f"localhost:5000/x/y@{DIGEST}",
        "registry.example.com/a_b/c-d:v1.0-rc1",
        "registry.example.com:443/group/sub/tool",
        "a__b",
        "library/busybox:latest",
        f"busybox:1.36@{DIGEST}",
        "x" * 200,
    ],
)
def test_image_accepts(value: str) -> None:
    assert validation.image(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "NOT A REF!!",
        "Bad/Name",
        "alpine/UPPER",
        "ghcr.io/Group/tool",
        "",
        "alpine:",
        "alpine@",
        "img@sha256:short",
        "-img",
        "img-",
        "img:tagé",
        "a:b:c",
        "x" * 256,
    ],
)
def test_image_refuses(value: str) -> None:
    with pytest.raises(BadInput) as caught:
        validation.image(value)
    assert "image" in caught.value.message
    assert "Docker image reference" in caught.value.message


@pytest.mark.parametrize(
    "value",
    [
        "https://github.com/group/data.git",
        "http://git.example.org/data",
        "ssh://git@host.example.org/group/data.git",
        "ssh://host:2222/srv/data.git",
        "git://host/data",
        "file:///abs/repo",
        "git@github.com:group/data.git",
        "/abs/path",
        "./rel",
        "../rel/repo",
        "~/repo",
    ],
)
def test_git_url_accepts(value: str) -> None:
    assert validation.git_url(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "ext::sh -c touch% /tmp/pwned",
        "ext::sh",
        "-upload-pack=touch /tmp/x",
        "--upload-pack=x",
        "file://relative",
        "https://",
        "https://host",
        "ssh://",
        "fd::17",
        " https://host/r",
        "https://host/r x",
        "https://host/r\n",
        "git@host:",
        "relative",
        "",
        "/" + "a" * 2048,
    ],
)
def test_git_url_refuses(value: str) -> None:
    with pytest.raises(BadInput) as caught:
        validation.git_url(value, "dataset url")
    assert caught.value.message.startswith("invalid dataset url")
    assert "git URL" in caught.value.message


@pytest.mark.parametrize("value", ["main", "master", "feature/x", "v1.0", "data-2024"])
def test_branch_accepts(value: str) -> None:
    assert validation.branch(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "-x", "/x", "x/", "a..b", "a.lock", "a b", "a:b", "a~1", "a^", "a?", "a*", "a[", "a\\b"],
)
def test_branch_refuses(value: str) -> None:
    with pytest.raises(BadInput, match="invalid branch"):
        validation.branch(value)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], {}),
        (["A=1"], {"A": "1"}),
        (["B_2=x=y", "C="], {"B_2": "x=y", "C": ""}),
        (["_X=a b"], {"_X": "a b"}),
        (["A=1", "A=2"], {"A": "2"}),  # the last one wins, as with docker -e
    ],
)
def test_env_pairs_parse(pairs: list[str], expected: dict[str, str]) -> None:
    assert validation.env_pairs(pairs) == expected


@pytest.mark.parametrize("pair", ["NOEQ", "=x", "1A=x", "A-B=x", "A B=x", "A=\x00"])
def test_env_pairs_refuse(pair: str) -> None:
    with pytest.raises(BadInput, match="environment variable"):
        validation.env_pairs([pair])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("region=eu", {"region": "eu"}),
        ("region=eu, gpu=yes", {"region": "eu", "gpu": "yes"}),
        ("a=b,,c=", {"a": "b", "c": ""}),
        (["site/rack=R-12"], {"site/rack": "R-12"}),
    ],
)
def test_labels_parse(text: str | list[str], expected: dict[str, str]) -> None:
    assert validation.labels(text) == expected


@pytest.mark.parametrize("text", ["Region=eu", "x", "a=b c", "a=b;c", "=v", "a=" + "v" * 64])
def test_labels_refuse(text: str) -> None:
    with pytest.raises(BadInput, match="labels entry"):
        validation.labels(text)


@pytest.mark.parametrize(
    ("selector", "member", "expected"),
    [
        ({}, {}, True),
        ({"region": "eu"}, {"region": "eu", "gpu": "yes"}, True),
        ({"region": "eu"}, {"region": "us"}, False),
        ({"region": "eu"}, {}, False),
    ],
)
def test_labels_match(selector: dict[str, str], member: dict[str, str], expected: bool) -> None:
    assert validation.labels_match(selector, member) is expected


@pytest.mark.parametrize(
    ("value", "cleaned", "size"),
    [
        ("256m", "256m", 256 * 1024**2),
        ("1g", "1g", 1024**3),
        ("1G", "1g", 1024**3),
        ("6m", "6m", 6 * 1024**2),
        ("10mb", "10mb", 10 * 1024**2),
        (" 512m ", "512m", 512 * 1024**2),
        ("7340032", "7340032", 7340032),
        ("8192k", "8192k", 8 * 1024**2),
    ],
)
def test_memory_accepts(value: str, cleaned: str, size: int) -> None:
    assert validation.memory(value) == cleaned
    assert validation.memory_bytes(value) == size


@pytest.mark.parametrize("value", ["", "abc", "5m", "1024k", "12", "0g", "1t", "-1g", "1.5g"])
def test_memory_refuses(value: str) -> None:
    with pytest.raises(BadInput, match="memory"):
        validation.memory(value)


@pytest.mark.parametrize("value", ["bridge", "none", "my-net", "net_1.a"])
def test_network_accepts(value: str) -> None:
    assert validation.network(value) == value


@pytest.mark.parametrize("value", ["host", "", "-x", "a b", "a/b", "x" * 129])
def test_network_refuses(value: str) -> None:
    with pytest.raises(BadInput, match="invalid network"):
        validation.network(value)


@pytest.mark.parametrize("value", [0, -1, -0.5])
def test_positive_refuses(value: float) -> None:
    with pytest.raises(BadInput, match="greater than 0"):
        validation.positive(value, "timeout")


def test_positive_accepts() -> None:
    assert validation.positive(0.5, "timeout") == 0.5
