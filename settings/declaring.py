"""How a setting is declared (`setting(...)`), what its declaration says (`SettingInfo`), the base of
the settings dataclasses (`Settings`: every field checked when an instance is made), and the routing
of keywords to the component that declares each."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from spanqa.errors import ConfigError
from spanqa.settings.checks import one_of


def setting(
    default: Any,
    doc: str,
    check: Callable[[str, Any], Any] | None = None,
    *,
    flag: str | None = None,
    metavar: str | None = None,
    choices: tuple | None = None,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """A settings field: its `default`, a one-line `doc`, the `check` every value passes, and how the
    command line takes it: `flag` (default `--name-with-dashes`), `metavar`, `choices`, and `parse`
    (the text of the option to a value; default from the field's type)."""
    if choices is not None and check is None:
        check = one_of(*choices)
    metadata = {"doc": doc, "check": check, "flag": flag, "metavar": metavar, "choices": choices, "parse": parse}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class SettingInfo:
    """What a setting's declaration says, for the command line and the reference page."""

    component: str
    name: str
    default: Any
    doc: str
    flag: str
    metavar: str | None
    choices: tuple | None
    parse: Callable[[str], Any] | None
    check: Callable[[str, Any], Any] | None
    annotation: str  # the field's type as written: "int | None"


class Settings:
    """Base of the settings dataclasses: every field is checked when an instance is made."""

    component: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for info in self.infos():
            if info.check is not None:
                info.check(info.name, getattr(self, info.name))
        self.check_together()

    def check_together(self) -> None:
        """Checks between fields (override); each field has been checked on its own."""

    @classmethod
    def check_value(cls, name: str, value: Any) -> Any:
        """`value` checked as the declaration of setting `name` checks it (for a value given on its own)."""
        info = next(info for info in cls.infos() if info.name == name)
        return value if info.check is None else info.check(name, value)

    @classmethod
    def infos(cls) -> Iterator[SettingInfo]:
        """What each field's declaration says, in declaration order."""
        for item in dataclasses.fields(cls):  # type: ignore[arg-type]
            if "doc" not in item.metadata:
                continue
            meta = item.metadata
            yield SettingInfo(
                component=cls.component, name=item.name, default=item.default, doc=meta["doc"],
                flag=meta["flag"] or "--" + item.name.replace("_", "-"), metavar=meta["metavar"],
                choices=meta["choices"], parse=meta["parse"], check=meta["check"], annotation=str(item.type),
            )

    def replace(self, **changes: Any):
        """A copy with `changes` (checked like any new instance)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """Each setting's name and value."""
        return {info.name: getattr(self, info.name) for info in self.infos()}


def owners(components: tuple[type[Settings], ...]) -> dict[str, type[Settings]]:
    """Each setting name to the component declaring it; a name declared twice is a bug caught here."""
    found: dict[str, type[Settings]] = {}
    for klass in components:
        for info in klass.infos():
            if info.name in found:
                raise TypeError(f"setting {info.name!r} is declared by both {found[info.name].__name__} and {klass.__name__}")
            found[info.name] = klass
    return found


def route_keywords(keywords: dict[str, Any], components: tuple[type[Settings], ...]) -> dict[type[Settings], dict[str, Any]]:
    """`keywords` grouped by the component that declares each; unknown names are a ConfigError."""
    known = owners(components)
    routed: dict[type[Settings], dict[str, Any]] = {}
    for name, value in keywords.items():
        klass = known.get(name)
        if klass is None:
            near = difflib.get_close_matches(name, list(known), n=3)
            hint = f"did you mean {' or '.join(repr(n) for n in near)}? " if near else ""
            raise ConfigError(f"unknown setting {name!r}: {hint}the settings are {', '.join(sorted(known))}")
        routed.setdefault(klass, {})[name] = value
    return routed
