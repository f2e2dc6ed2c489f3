"""Task creators are found and ordered as doit itself does, without reading source."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import doit.loader
import pytest

from edibuild.doit_ext import creators

ORIGINAL = doit.loader._get_task_creators


def task_second() -> Iterator[dict[str, Any]]:
    yield {"name": "b", "actions": None}


def task_first() -> Iterator[dict[str, Any]]:  # defined later: sorts after task_second
    yield {"name": "a", "actions": None}


class Group:
    """An object with create_doit_tasks, as doit's docs show."""

    @staticmethod
    def create_doit_tasks() -> dict[str, Any]:
        return {"actions": None}


def wrapped() -> None:
    """Not a creator."""


NAMESPACE = {
    "task_first": task_first,
    "task_second": task_second,
    "group": Group,
    "task_params": doit.loader.task_params,
    "task_wrapped": functools.wraps(wrapped)(lambda: None),
    "helper": wrapped,
    "task_constant": 3,
}


def test_same_creators_and_lines_as_doit() -> None:
    assert creators._get_task_creators(NAMESPACE, []) == ORIGINAL(NAMESPACE, [])
    ordered = sorted(creators._get_task_creators(NAMESPACE, []), key=lambda c: c[2])
    assert [name for name, _, _ in ordered][:2] == ["second", "first"]


def test_a_task_named_like_a_command_is_refused() -> None:
    with pytest.raises(doit.loader.InvalidDodoFile, match="command name"):
        creators._get_task_creators({"task_list": task_first}, ["list"])


def test_installed_loader_builds_the_same_tasks() -> None:
    creators.install()
    assert doit.loader._get_task_creators is creators._get_task_creators
    tasks = doit.loader.load_tasks(NAMESPACE)
    assert [t.name for t in tasks][:4] == ["second", "second:b", "first", "first:a"]
