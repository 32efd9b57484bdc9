"""Topic names, filters, matching, shared subscriptions and the subscription trie."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehub.protocols.mqtt import (
    Subscription,
    SubscriptionTrie,
    is_valid_topic_filter,
    is_valid_topic_name,
    parse_shared,
    topic_filter_error,
    topic_matches,
)


@pytest.mark.parametrize("name", ["a", "a/b", "/", "a//b", "$SYS/x", " ", "ü/€", "a/b/"])
def test_valid_topic_names(name: str) -> None:
    assert is_valid_topic_name(name)


@pytest.mark.parametrize("name", ["", "a/+", "#", "a/#", "a+b", "a\x00"])
def test_invalid_topic_names(name: str) -> None:
    assert not is_valid_topic_name(name)


@pytest.mark.parametrize(
    "f",
    ["#", "+", "a/#", "a/+/b", "+/+", "/+", "+/", "a//#", "$SYS/#", "$share/g/a/#", "$share/g/#", "$share/g//"],
)
def test_valid_filters(f: str) -> None:
    assert is_valid_topic_filter(f), topic_filter_error(f)


@pytest.mark.parametrize(
    "f",
    [
        "",
        "a/#/b",
        "a#",
        "#/",
        "a+",
        "+a/b",
        "a/b+",
        "$share/",
        "$share/g",
        "$share/g/",
        "$share//a",
        "$share/+/a",
        "$share/#/a",
        "x\x00",
    ],
)
def test_invalid_filters(f: str) -> None:
    assert not is_valid_topic_filter(f)
    assert topic_filter_error(f)


def test_parse_shared() -> None:
    assert parse_shared("$share/grp/a/+/c") == ("grp", "a/+/c")
    assert parse_shared("a/b") == (None, "a/b")
    assert parse_shared("$shared/x") == (None, "$shared/x")


MATCH_CASES = [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("#", "a/b/c", True),
    ("#", "/", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("#", "$SYS/x", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$SYS/#", "$SYS", True),
    ("a/b", "a/b", True),
    ("a/b", "a/b/c", False),
    ("a/+/c", "a/b/c", True),
    ("a/+/c", "a/b/d", False),
    ("a//c", "a//c", True),
    ("a/+/c", "a//c", True),
]


@pytest.mark.parametrize(("f", "topic", "expected"), MATCH_CASES)
def test_topic_matches(f: str, topic: str, expected: bool) -> None:
    assert topic_matches(f, topic) is expected


@pytest.mark.parametrize(("f", "topic", "expected"), MATCH_CASES)
def test_trie_agrees_with_matcher(f: str, topic: str, expected: bool) -> None:
    trie: SubscriptionTrie[str, int] = SubscriptionTrie()
    trie.add(f, "s", 1)
    assert bool(trie.match(topic).direct) is expected


def test_trie_add_replace_remove() -> None:
    trie: SubscriptionTrie[str, Subscription] = SubscriptionTrie()
    assert trie.add("a/+", "c1", Subscription("a/+", 0))
    assert not trie.add("a/+", "c1", Subscription("a/+", 1))  # replaced
    assert trie.add("a/#", "c1", Subscription("a/#", 2))
    assert trie.add("a/b", "c2", Subscription("a/b", 1))
    assert trie.add("$share/g/a/b", "c3", Subscription("$share/g/a/b", 1))
    assert trie.add("$share/g/a/b", "c4", Subscription("$share/g/a/b", 0))
    assert trie.add("$share/h/a/+", "c4", Subscription("$share/h/a/+", 0))
    assert len(trie) == 6
    m = trie.match("a/b")
    assert sorted((k, f, v.qos) for k, v, f in m.direct) == [("c1", "a/#", 2), ("c1", "a/+", 1), ("c2", "a/b", 1)]
    assert {k: sorted(s for s, _ in v) for k, v in m.shared.items()} == {
        ("g", "a/b"): ["c3", "c4"],
        ("h", "a/+"): ["c4"],
    }
    assert trie.get("a/+", "c1") == Subscription("a/+", 1)
    assert trie.subscriptions_of("c4") == {"$share/g/a/b", "$share/h/a/+"}
    assert trie.remove("a/+", "c1")
    assert not trie.remove("a/+", "c1")
    assert not trie.remove("x/y", "c1")
    assert not trie.remove("$share/zz/a/b", "c3")
    assert trie.remove_subscriber("c4") == 2
    assert trie.remove_subscriber("nobody") == 0
    assert sorted((f, k) for f, k, _ in trie) == [("$share/g/a/b", "c3"), ("a/#", "c1"), ("a/b", "c2")]
    for f, k, _ in list(trie):
        assert trie.remove(f, k)
    assert len(trie) == 0
    assert not trie._root.children  # pruned


levels = st.sampled_from(["a", "b", "", "$x", "c"])
topics = st.lists(levels, min_size=1, max_size=4).map("/".join).filter(bool)
filter_levels = st.sampled_from(["a", "b", "", "+", "$x", "c"])


@st.composite
def filters(draw: st.DrawFn) -> str:
    parts = draw(st.lists(filter_levels, min_size=1, max_size=4))
    if draw(st.booleans()):
        parts.append("#")
    return "/".join(parts)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(filters(), st.integers(0, 5)), max_size=20), st.lists(topics, min_size=1, max_size=5))
def test_trie_matches_like_brute_force(subs: list[tuple[str, int]], probe: list[str]) -> None:
    trie: SubscriptionTrie[int, str] = SubscriptionTrie()
    for f, k in subs:
        trie.add(f, k, f)
    live = {(f, k) for f, k in subs}
    for topic in probe:
        got = sorted((k, f) for k, _, f in trie.match(topic).direct)
        want = sorted((k, f) for f, k in live if topic_matches(f, topic))
        assert got == want
    for f, k in subs[::2]:
        trie.remove(f, k)
        live.discard((f, k))
    for topic in probe:
        got = sorted((k, f) for k, _, f in trie.match(topic).direct)
        assert got == sorted((k, f) for f, k in live if topic_matches(f, topic))
