"""Plain-words explanations of configuration changes."""

from __future__ import annotations

from edibuild.engine.explain import config_changes, flatten, reasons
from edibuild.engine.inputs import StageInputs


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


def _inputs(epoch: int) -> StageInputs:
    return StageInputs("bmap", "c0de", {"k": 1}, {}, {"disk": {"image": "ab" * 32}}, epoch)


def test_the_epoch_is_an_input_of_every_stage() -> None:
    """Every stage's tools see SOURCE_DATE_EPOCH: another epoch is another key, and says so."""
    before, after = _inputs(1704067200), _inputs(1735689600)
    assert before.key != after.key
    recorded = before.as_manifest()
    assert reasons(recorded, before, outputs_intact=True) == []
    assert reasons(recorded, after, outputs_intact=True) == [
        "the source date epoch changed from 1704067200 to 1735689600"
    ]
    older = {k: v for k, v in recorded.items() if k != "source_date_epoch"}
    assert reasons(older, before, outputs_intact=True) == [
        "the source date epoch (1704067200) is not recorded with the outputs"
    ]
