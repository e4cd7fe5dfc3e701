"""The SSRF guard's address rules, without the network (a resolver seam stands in for DNS)."""

from __future__ import annotations

import ipaddress

import pytest

from tools.netguard import NetGuard, URLRefused, parse_ip, refusal_reason


def fixed(answers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise URLRefused(f"cannot resolve host {host!r}")
        return answers[host]

    return resolve


@pytest.mark.parametrize(
    ("spelling", "address"),
    [("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("127.1", "127.0.0.1"), ("017700000001", "127.0.0.1"),
     ("0177.0.0.1", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("0", "0.0.0.0"), ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
     ("127.0.0.1.", "127.0.0.1"), ("[fe80::1%25eth0]", "fe80::1")],
)  # fmt: skip
def test_odd_spellings_normalise(spelling: str, address: str) -> None:
    assert parse_ip(spelling) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "name", ["example.com", "bad.cafe", "1.2.3.4 x", "localhost", "deadbeef.com"]
)
def test_names_are_not_addresses(name: str) -> None:
    assert parse_ip(name) is None


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "169.254.1.1", "100.64.0.1",
     "0.0.0.0", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "198.18.0.1", "192.0.2.1",
     "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "ff0e::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
     "::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1", "2002:7f00:1::", "2002:a00:1::1",
     "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:db8::1"],
)  # fmt: skip
def test_internal_addresses_refused(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"],
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [("file:///etc/passwd", "only http and https"), ("gopher://x/", "only http and https"), ("/relative", "only http"),
     ("http://user:pw@example.com/", "credentials"), ("http://example.com@127.0.0.1/", "credentials"),
     ("http://", "no host"), ("http://exa mple.com/", "whitespace"), ("http://example.com:99999/", "not a valid URL"),
     ("http://2130706433/", "loopback"), ("http://0x7f.1/", "loopback"), ("http://127.1/", "loopback"),
     ("http://0177.0.0.1/", "loopback"), ("http://[::ffff:127.0.0.1]/", "IPv6 form of 127.0.0.1"),
     ("http://[64:ff9b::a9fe:a9fe]/", "metadata"), ("http://169.254.169.254/latest/meta-data/", "metadata"),
     ("http://metadata.google.internal/computeMetadata/v1/", "metadata"), ("http://[fd00:ec2::254]/", "metadata"),
     ("http://0/", "unspecified"), ("http://[2002:7f00:1::]/", "6to4"),
     ("docs.python.org/3/", "e.g. 'https://docs.python.org/3/'"), ("localhost:8000/x", "not an absolute URL")],
)  # fmt: skip
def test_refused_urls(url: str, message: str) -> None:
    guard = NetGuard(resolver=fixed({"example.com": ["93.184.216.34"]}))
    with pytest.raises(
        URLRefused, match=message if message != "6to4" else "IPv6 form of 127.0.0.1"
    ):
        guard.check(url)


def test_name_resolving_to_internal_is_refused_even_with_a_public_address_too() -> None:
    guard = NetGuard(
        resolver=fixed({"mixed.test": ["93.184.216.34", "10.0.0.5"], "inner.test": ["192.168.0.2"]})
    )
    for host in ("mixed.test", "inner.test"):
        with pytest.raises(URLRefused, match="private address"):
            guard.check(f"http://{host}/")


def test_pinned_target_keeps_host_and_port() -> None:
    guard = NetGuard(resolver=fixed({"docs.example": ["93.184.216.34", "2606:2800::1"]}))
    t = guard.check("https://Docs.Example:8443/a/b?q=1#frag")
    assert (t.host, t.port, t.path) == ("docs.example", 8443, "/a/b?q=1")
    assert t.addresses == ["93.184.216.34", "2606:2800::1"]
    assert t.pinned_url("2606:2800::1") == "https://[2606:2800::1]:8443/a/b?q=1"
    assert t.host_header == "docs.example:8443"
    assert guard.check("http://docs.example/").host_header == "docs.example"


def test_allow_hosts_by_name_address_and_network() -> None:
    resolver = fixed(
        {"intranet.corp": ["10.0.0.8"], "other.corp": ["10.0.0.9"], "localhost": ["127.0.0.1"]}
    )
    guard = NetGuard(["intranet.corp", "192.168.5.0/24", "localhost"], resolver=resolver)
    assert guard.check("http://intranet.corp/").addresses == ["10.0.0.8"]
    assert guard.check("http://192.168.5.77/").addresses == ["192.168.5.77"]
    assert guard.check("http://localhost:8000/").addresses == ["127.0.0.1"]
    for refused in (
        "http://other.corp/",
        "http://192.168.6.1/",
        "http://127.0.0.1:8000/",
        "http://2130706433/",
    ):
        with pytest.raises(URLRefused):
            guard.check(refused)


def test_allow_entries_with_a_port_allow_that_port_only() -> None:
    guard = NetGuard(["searx.lan:8888", "127.0.0.1:8080", "[::1]:8080", "10.1.0.0/16"],
                     resolver=fixed({"searx.lan": ["10.0.0.8"]}))  # fmt: skip
    for allowed in ("http://searx.lan:8888/search", "http://127.0.0.1:8080/", "http://[::1]:8080/",
                    "http://10.1.2.3:9999/"):  # fmt: skip
        assert guard.check(allowed).addresses
    for refused in ("http://searx.lan/", "http://searx.lan:8889/", "http://127.0.0.1:8081/",
                    "http://127.0.0.1/", "http://[::1]:80/", "http://2130706433:8081/"):  # fmt: skip
        with pytest.raises(URLRefused):
            guard.check(refused)
