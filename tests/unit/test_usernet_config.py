"""UserNetConfig and the pure parts of usernet: keys, ports, IP rules, stack choice, plans."""

from __future__ import annotations

import ipaddress
import random

import pytest

from ringfence.errors import MissingToolError, ProfileError
from ringfence.kernel import rtnetlink as rt
from ringfence.runtime import usernet
from ringfence.runtime.usernet import PortForward, UserNetConfig, parse_keys


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


# -- keys -------------------------------------------------------------------------------------


def test_defaults_are_auto_with_nothing_open() -> None:
    config = parse_keys({})
    assert config == UserNetConfig()
    assert config.stack == "auto"
    assert config.allow_host_ports == () and config.publish == ()
    assert config.blocked() == ()


def test_unknown_key_is_refused_by_name() -> None:
    with pytest.raises(ProfileError, match="IPAddressAlow"):
        parse_keys({"IPAddressAlow": "any"})


@pytest.mark.parametrize("stack", ["auto", "pasta", "slirp4netns"])
def test_stack_names(stack: str) -> None:
    assert parse_keys({"UserNetStack": stack}).stack == stack


def test_bad_stack_names_key_and_value() -> None:
    with pytest.raises(ProfileError, match=r"UserNetStack: 'vde'"):
        parse_keys({"UserNetStack": "vde"})


def test_allow_host_ports_from_strings_lists_and_ints() -> None:
    assert parse_keys({"AllowHostPorts": "5432 6379,80"}).allow_host_ports == (5432, 6379, 80)
    assert parse_keys({"AllowHostPorts": [22, "22", "80"]}).allow_host_ports == (22, 80)
    assert parse_keys({"AllowHostPorts": 8080}).allow_host_ports == (8080,)


@pytest.mark.parametrize("value", ["0", "65536", "ssh", "-1", True])
def test_bad_host_ports_name_key_and_value(value: object) -> None:
    with pytest.raises(ProfileError, match="AllowHostPorts"):
        parse_keys({"AllowHostPorts": value})


def test_empty_entry_resets_the_list_as_in_systemd() -> None:
    config = parse_keys({"IPAddressDeny": ["10.0.0.0/8", "", "192.0.2.0/24"]})
    assert config.ip_deny == (net("192.0.2.0/24"),)


# -- PublishPorts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8080:80", PortForward(8080, 80, "tcp", "127.0.0.1")),
        ("8080:80/udp", PortForward(8080, 80, "udp", "127.0.0.1")),
        ("0.0.0.0:8443:443/tcp", PortForward(8443, 443, "tcp", "0.0.0.0")),
        ("[::1]:8080:80", PortForward(8080, 80, "tcp", "::1")),
        (" 127.0.0.2:1:2/TCP ", PortForward(1, 2, "tcp", "127.0.0.2")),
    ],
)
def test_publish_syntax(text: str, expected: PortForward) -> None:
    assert PortForward.parse(text) == expected


def test_publish_defaults_to_host_loopback_only() -> None:
    (fwd,) = parse_keys({"PublishPorts": "8080:80"}).publish
    assert fwd.host_addr == "127.0.0.1"
    assert str(fwd) == "127.0.0.1:8080:80/tcp"
    assert str(PortForward.parse("[::1]:8080:80/udp")) == "[::1]:8080:80/udp"


@pytest.mark.parametrize(
    "text",
    ["80", "a:b", "1:2:3:4", "70000:80", "8080:0", "8080:80/sctp", "localhost:8080:80",
     "[::1:8080:80", "[::1]8080:80", "[::1]:8080"],
)  # fmt: skip
def test_bad_publish_names_key_and_value(text: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_keys({"PublishPorts": [text]})
    assert "PublishPorts" in str(info.value) and repr(text.strip()) in str(info.value)


def test_publish_listed_twice_is_refused() -> None:
    with pytest.raises(ProfileError, match="twice"):
        parse_keys({"PublishPorts": "8080:80 127.0.0.1:8080:81"})


def test_same_port_published_and_allowed_is_refused() -> None:
    with pytest.raises(ProfileError, match="AllowHostPorts"):
        parse_keys({"PublishPorts": "8080:5432", "AllowHostPorts": "5432"})
    with pytest.raises(ProfileError, match="AllowHostPorts"):
        parse_keys({"PublishPorts": "5432:80", "AllowHostPorts": "5432"})
    # UDP forwards do not share pasta's TCP loopback path.
    assert parse_keys({"PublishPorts": "5432:5432/udp", "AllowHostPorts": "5432"}).publish


# -- IPAddressAllow= / IPAddressDeny= ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "nets"),
    [
        ("any", ["0.0.0.0/0", "::/0"]),
        ("localhost", ["127.0.0.0/8", "::1/128"]),
        ("link-local", ["169.254.0.0/16", "fe80::/64"]),
        ("multicast", ["224.0.0.0/4", "ff00::/8"]),
    ],
)
def test_symbolic_names_as_systemd(name: str, nets: list[str]) -> None:
    assert parse_keys({"IPAddressDeny": name}).ip_deny == tuple(map(net, nets))


def test_host_bits_are_ignored_and_bare_addresses_are_hosts() -> None:
    config = parse_keys({"IPAddressAllow": "10.1.2.3/8 192.0.2.7 2001:db8::1"})
    assert config.ip_allow == (net("10.0.0.0/8"), net("192.0.2.7/32"), net("2001:db8::1/128"))


@pytest.mark.parametrize("value", ["10.0.0.300", "10.0.0.0/33", "example.org", "anywhere"])
def test_bad_address_names_key_and_value(value: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_keys({"IPAddressDeny": value})
    assert "IPAddressDeny" in str(info.value) and repr(value) in str(info.value)


def test_allow_wins_even_when_less_specific() -> None:
    # systemd: allowed if it matches IPAddressAllow= at all, whatever the prefix lengths.
    config = parse_keys({"IPAddressDeny": "10.1.0.0/16", "IPAddressAllow": "10.0.0.0/8"})
    assert config.blocked() == ()


def test_allow_alone_restricts_nothing() -> None:
    assert parse_keys({"IPAddressAllow": "192.0.2.0/24"}).blocked() == ()


def test_deny_any_allow_one_blocks_exactly_the_rest() -> None:
    blocked = parse_keys({"IPAddressDeny": "any", "IPAddressAllow": "192.0.2.0/24"}).blocked()
    v4 = [n for n in blocked if n.version == 4]
    assert len(v4) == 24  # the complement of a /24 in 0.0.0.0/0
    assert sum(n.num_addresses for n in v4) == 2**32 - 256
    assert net("::/0") in blocked  # IPv6 untouched by an IPv4 allow entry


def _random_net(rng: random.Random, lengths: list[int]) -> ipaddress.IPv4Network:
    host = f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(256)}"
    return ipaddress.IPv4Network(f"{host}/{rng.choice(lengths)}", strict=False)


def test_blocked_set_is_exactly_deny_minus_allow() -> None:
    rng = random.Random(6)
    for _ in range(40):
        deny = [_random_net(rng, [8, 14, 20, 24]) for _ in range(3)]
        allow = [_random_net(rng, [12, 22, 28, 32]) for _ in range(3)]
        blocked = usernet.blocked_networks(allow, deny)
        for _ in range(300):
            addr = _random_net(rng, [32]).network_address
            expected = any(addr in n for n in deny) and not any(addr in n for n in allow)
            assert any(addr in n for n in blocked) == expected, (addr, deny, allow, blocked)


# -- choosing the stack -----------------------------------------------------------------------


def lookup(*installed: str):  # type: ignore[no-untyped-def]
    return lambda name: f"/usr/bin/{name}" if name in installed else None


def test_auto_prefers_slirp4netns_by_measurement() -> None:
    both = lookup("pasta", "slirp4netns")
    assert usernet.choose_stack(UserNetConfig(), both) == ("slirp4netns", "/usr/bin/slirp4netns")
    assert usernet.choose_stack(UserNetConfig(), lookup("pasta"))[0] == "pasta"


def test_auto_picks_pasta_for_allowed_host_ports() -> None:
    config = parse_keys({"AllowHostPorts": "5432"})
    assert usernet.choose_stack(config, lookup("pasta", "slirp4netns"))[0] == "pasta"
    with pytest.raises(MissingToolError, match="install passt"):
        usernet.choose_stack(config, lookup("slirp4netns"))


def test_slirp4netns_cannot_open_single_host_ports() -> None:
    config = parse_keys({"UserNetStack": "slirp4netns", "AllowHostPorts": "5432"})
    with pytest.raises(ProfileError, match="pasta"):
        usernet.choose_stack(config, lookup("pasta", "slirp4netns"))


def test_ipv6_publish_needs_pasta() -> None:
    config = parse_keys({"PublishPorts": "[::1]:8080:80"})
    assert usernet.choose_stack(config, lookup("pasta", "slirp4netns"))[0] == "pasta"
    with pytest.raises(ProfileError, match="pasta"):
        usernet.choose_stack(
            parse_keys({"UserNetStack": "slirp4netns", "PublishPorts": "[::1]:8080:80"}),
            lookup("pasta", "slirp4netns"),
        )


def test_missing_tools_say_what_to_install() -> None:
    with pytest.raises(MissingToolError, match="install passt or slirp4netns"):
        usernet.choose_stack(UserNetConfig(), lookup())
    with pytest.raises(MissingToolError, match="install passt"):
        usernet.choose_stack(parse_keys({"UserNetStack": "pasta"}), lookup("slirp4netns"))
    with pytest.raises(MissingToolError, match="install slirp4netns"):
        usernet.choose_stack(parse_keys({"UserNetStack": "slirp4netns"}), lookup("pasta"))


# -- command lines ----------------------------------------------------------------------------


def test_slirp4netns_command_blocks_host_loopback_and_exits_with_launcher() -> None:
    argv = usernet.helper_argv("slirp4netns", "/s", 42, UserNetConfig(), ready_fd=3, exit_fd=4)
    assert argv[0] == "/s" and argv[-2:] == ["42", "tap0"]
    assert {"--disable-host-loopback", "--enable-seccomp", "--ready-fd=3", "--exit-fd=4"} <= set(
        argv
    )
    assert "--configure" not in argv and "-c" not in argv  # the namespace is configured by us


def test_pasta_command_turns_every_automatic_forward_off() -> None:
    argv = usernet.helper_argv("pasta", "/p", 42, UserNetConfig(), ready_fd=3)
    pairs = dict(zip(argv, argv[1:], strict=False))
    assert pairs["--tcp-ports"] == pairs["--udp-ports"] == "none"
    assert pairs["--tcp-ns"] == pairs["--udp-ns"] == "none"
    assert "--no-map-gw" in argv and "auto" not in argv
    assert pairs["--pid"] == "/dev/fd/3" and "--foreground" in argv
    assert pairs["--mac-addr"] == usernet.GATEWAY_MAC  # not the host's MAC
    assert argv[-1] == "42"


def test_pasta_command_opens_exactly_what_is_asked() -> None:
    config = parse_keys({"AllowHostPorts": "5432 6379", "PublishPorts": "8080:80 53:53/udp"})
    argv = usernet.helper_argv("pasta", "/p", 1, config, ready_fd=3)
    pairs = dict(zip(argv, argv[1:], strict=False))
    assert pairs["--tcp-ns"] == "5432,6379"
    assert pairs["--udp-ns"] == "none"
    assert pairs["--tcp-ports"] == "127.0.0.1/8080:80"
    assert pairs["--udp-ports"] == "127.0.0.1/53:53"


def test_resolv_conf_points_at_the_forwarder() -> None:
    assert usernet.RESOLV_CONF == "nameserver 10.0.2.3\n"


# -- what is configured inside the namespace ------------------------------------------------


def _rules(config: UserNetConfig, stack: str) -> list[str]:
    return [r.describe() for r in usernet.netns_plan(config, stack).rules]


def test_plan_blocks_the_host_mapping_addresses_of_each_stack() -> None:
    slirp = _rules(UserNetConfig(), "slirp4netns")
    assert "300: to 10.0.2.0/24 prohibit" in slirp and "300: to fd00::/64 prohibit" in slirp
    pasta = _rules(UserNetConfig(), "pasta")
    assert "300: to 10.0.2.2/32 prohibit" in pasta and "300: to 10.0.2.3/32 prohibit" in pasta
    for rules in (slirp, pasta):
        assert "200: to 10.0.2.3/32 udp dport 53 lookup main" in rules
        assert "201: to 10.0.2.3/32 tcp dport 53 lookup main" in rules


def test_plan_rule_order_deny_before_dns_before_host_blocks() -> None:
    config = parse_keys({"IPAddressDeny": "any", "PublishPorts": "8080:80"})
    plan = usernet.netns_plan(config, "slirp4netns")
    priorities = [r.priority for r in plan.rules]
    assert priorities == sorted(priorities)
    first = plan.rules[0]
    # slirp4netns's forwarded connections come from 10.0.2.2: only replies from port 80 to it.
    assert first.describe() == "50: from 10.0.2.100/32 to 10.0.2.2/32 tcp sport 80 lookup main"
    assert {r.describe() for r in plan.rules if r.priority == usernet.RULE_DENY} == {
        "100: to 0.0.0.0/0 prohibit",
        "100: to ::/0 prohibit",
    }
    assert not [r for r in usernet.netns_plan(config, "pasta").rules if r.sport]


def test_plan_routes_are_the_two_defaults() -> None:
    routes = usernet.netns_plan(UserNetConfig(), "pasta").routes
    assert [r.describe() for r in routes] == [
        "unicast default via 10.0.2.2 dev tap0",
        "unicast default via fe80::2 dev tap0",
    ]
    assert routes[0].onlink and routes[0].family == rt.AF_INET


def test_slirp4netns_routes_ask_for_quick_acknowledgements() -> None:
    # slirp4netns's fixed 64 KiB window: quickack keeps downloads moving; pasta's suffer from it
    slirp = usernet.netns_plan(UserNetConfig(), "slirp4netns").routes
    assert [r.describe() for r in slirp] == [
        "unicast default via 10.0.2.2 dev tap0 quickack 1",
        "unicast default via fe80::2 dev tap0 quickack 1",
    ]
    assert not any(r.quickack for r in usernet.netns_plan(UserNetConfig(), "pasta").routes)


def test_describe_reports_what_is_enforced() -> None:
    config = parse_keys(
        {"AllowHostPorts": "5432", "PublishPorts": "8080:80", "IPAddressDeny": "192.0.2.0/24"}
    )
    state = usernet.UserNet(1, config, "pasta", "/usr/bin/pasta")
    state._version = "pasta test"
    report = state.describe()
    assert report["stack"] == "pasta" and report["version"] == "pasta test"
    assert report["host_loopback"] == "blocked except ports 5432"
    assert report["allowed_host_ports"] == [5432]
    assert report["published_ports"] == ["127.0.0.1:8080:80/tcp"]
    assert report["ip_blocked"] == ["192.0.2.0/24"]
    assert "100: to 192.0.2.0/24 prohibit" in report["rules"]  # type: ignore[operator]
