"""Read one mapping of a project's configuration into typed values: the one error helper.

Every section parser (edibuild/config/sections.py lists them) reads its mapping through a
Reader, so every mistake is reported the same way: the file and line the key was set on,
the dotted key, what was wrong and a hint, with "did you mean" for unknown keys and values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from edibuild.config import values
from edibuild.config.suggest import did_you_mean
from edibuild.config.yamlpos import describe
from edibuild.data import Json
from edibuild.errors import ConfigError, Location

Where = Callable[..., Location]
_ABSENT = object()


class Reader:
    """One mapping of the configuration (`layout.partitions.10_boot`, say), read with care."""

    def __init__(self, where: Where, path: Sequence[str], data: Json) -> None:
        self.where_of = where
        self.path = tuple(path)
        if not isinstance(data, Mapping):
            self.fail(
                f"must be a mapping, got {describe(data)}",
                hint=f"write `{self.path[-1]}:` followed by indented `name: value` lines",
            )
        self.data: Mapping[str, Json] = data

    @classmethod
    def section(cls, where: Where, name: str, data: Mapping[str, Json]) -> Reader | None:
        """A reader of top-level section `name`, or None when the project has none."""
        value = data.get(name)
        return None if value is None else cls(where, (name,), value)

    def key(self, field: str | None = None) -> str:
        """The dotted key of this mapping or of one of its fields."""
        return ".".join((*self.path, field) if field else self.path)

    def location(self, field: str | None = None) -> Location:
        """Where this mapping (or one of its fields) was set."""
        return self.where_of(*((*self.path, field) if field else self.path))

    def error(
        self, message: str, *, hint: str | None = None, field: str | None = None
    ) -> ConfigError:
        """The ConfigError of a mistake in this mapping or one of its fields."""
        return ConfigError(message, hint=hint, location=self.location(field), key=self.key(field))

    def fail(self, message: str, *, hint: str | None = None, field: str | None = None) -> NoReturn:
        """Raise the ConfigError of a mistake in this mapping or one of its fields."""
        raise self.error(message, hint=hint, field=field)

    def known(self, allowed: Sequence[str]) -> None:
        """Refuse keys that are not in `allowed`, suggesting the closest one."""
        for name in self.data:
            if name not in allowed:
                self.fail(f"unknown key {name!r}", hint=did_you_mean(name, allowed), field=name)

    def has(self, field: str) -> bool:
        """True when the field is set (even to null)."""
        return field in self.data

    def raw(self, field: str, default: Json = None) -> Json:
        """The field's value as it is (for values checked by their own code)."""
        return self.data.get(field, default)

    def child(self, field: str) -> Reader:
        """A reader of the mapping under `field`."""
        return Reader(self.where_of, (*self.path, field), self.data.get(field))

    def _value(self, field: str, default: object) -> Json:
        value = self.data.get(field, default)
        if value is _ABSENT:
            self.fail("is required but not set", hint=f"add `{field}: ...`", field=field)
        return value  # type: ignore[return-value]  # a default given by the caller

    def text(
        self, field: str, default: object = _ABSENT, *, what: str = "a text", forbidden: str = ""
    ) -> str:
        """A non-empty one-line string (no control characters, none of `forbidden`)."""
        value = self._value(field, default)
        return values.text(
            value, key=self.key(field), location=self.location(field), what=what,
            forbidden=forbidden,
        )  # fmt: skip

    def optional_text(self, field: str, *, what: str = "a text") -> str | None:
        """A one-line string, or None when the field is absent or null."""
        if self.data.get(field) is None:
            return None
        return self.text(field, what=what)

    def texts(
        self, field: str, default: Sequence[str] = (), *, what: str = "texts", forbidden: str = ""
    ) -> tuple[str, ...]:
        """A list of one-line strings (a single string is not a list)."""
        value = self.data.get(field, list(default))
        if not isinstance(value, list):
            self.fail(
                f"must be a list of {what}, got {describe(value)}",
                hint=f"write `{field}: [first, second]` or one `- item` per line",
                field=field,
            )
        key, location = self.key(field), self.location(field)
        return tuple(
            values.text(v, key=key, location=location, what=what, forbidden=forbidden)
            for v in value
        )

    def boolean(self, field: str, default: bool) -> bool:
        """True or false (not "yes", not 1)."""
        return values.boolean(
            self.data.get(field, default), key=self.key(field), location=self.location(field)
        )

    def number(self, field: str, default: object = _ABSENT, *, minimum: int, maximum: int) -> int:
        """A whole number in [minimum, maximum] (not a boolean, not a float)."""
        return values.whole_number(
            self._value(field, default), key=self.key(field), location=self.location(field),
            minimum=minimum, maximum=maximum,
        )  # fmt: skip

    def choice(self, field: str, choices: Sequence[str], default: object = _ABSENT) -> str:
        """One of `choices`, suggesting the closest one for anything else."""
        value = self._value(field, default)
        if not isinstance(value, str) or value not in choices:
            shown = value if isinstance(value, str) else describe(value)
            self.fail(f"unknown {field} {shown!r}", hint=did_you_mean(str(value), choices),
                      field=field)  # fmt: skip
        return value
