"""Plain-words explanations of configuration changes."""

from __future__ import annotations

from edibuild.engine.explain import config_changes, flatten


def test_flatten_names_nested_keys_and_named_list_items() -> None:
    data = {"a": {"b": 1}, "parts": [{"name": "root", "size": 2}], "plain": [1, 2]}
    assert flatten(data) == {
        "a.b": 1,
        "parts[root].name": "root",
        "parts[root].size": 2,
        "plain": [1, 2],
    }


def test_changes_say_what_changed_from_what_to_what() -> None:
    old = {"packages": ["a"], "mirror": "http://x", "gone": 1}
    new = {"packages": ["a", "b"], "mirror": "http://x", "added": True}
    assert list(config_changes(old, new)) == [
        "added was added (true)",
        "gone was removed (was 1)",
        'packages changed from ["a"] to ["a", "b"]',
    ]


def test_long_values_are_shortened() -> None:
    change = next(config_changes({"k": "x" * 200}, {"k": "y"}))
    assert change.startswith("k changed from xxx") and "..." in change and len(change) < 120
