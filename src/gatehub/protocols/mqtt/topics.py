"""Topic names and topic filters (MQTT section 4.7, shared subscriptions 4.8.2)."""

from __future__ import annotations

SHARE_PREFIX = "$share/"


def is_valid_topic_name(name: str) -> bool:
    """A PUBLISH topic: at least one character, no wildcards (``+``, ``#``), no U+0000."""
    return bool(name) and "+" not in name and "#" not in name and "\x00" not in name


def topic_filter_error(topic_filter: str) -> str | None:
    """Why ``topic_filter`` is not a valid subscription filter, or ``None`` if it is valid.

    ``+`` must fill a whole level; ``#`` must fill the last level; ``$share/{group}/{filter}``
    needs a non-empty group without ``+``, ``#`` or ``/``, followed by a valid filter.
    """
    if not topic_filter:
        return "topic filter is empty"
    if "\x00" in topic_filter:
        return "topic filter contains U+0000"
    if topic_filter.startswith(SHARE_PREFIX):
        group, sep, rest = topic_filter[len(SHARE_PREFIX) :].partition("/")
        if not group or "+" in group or "#" in group:
            return "shared subscription needs a share name without wildcards"
        if not sep or not rest:
            return "shared subscription needs a topic filter after the share name"
        topic_filter = rest
    if "+" not in topic_filter and "#" not in topic_filter:
        return None
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            return "'#' must be the whole last level of a topic filter"
        if "+" in level and level != "+":
            return "'+' must be a whole level of a topic filter"
    return None


def is_valid_topic_filter(topic_filter: str) -> bool:
    return topic_filter_error(topic_filter) is None


def parse_shared(topic_filter: str) -> tuple[str | None, str]:
    """Split ``$share/{group}/{filter}`` into (group, filter); (None, filter) if not shared."""
    if topic_filter.startswith(SHARE_PREFIX):
        group, _, rest = topic_filter[len(SHARE_PREFIX) :].partition("/")
        return group, rest
    return None, topic_filter


def has_wildcards(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Does ``topic_filter`` (not shared) match the topic name ``topic``?

    Topics starting with ``$`` are not matched by filters starting with a wildcard.
    """
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter == topic
    if topic.startswith("$") and topic_filter[0] in "+#":
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    n = len(t_levels)
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= n:
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(f_levels) == n
