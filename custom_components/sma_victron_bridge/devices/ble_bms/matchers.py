"""Home Assistant Bluetooth matchers made from ``aiobmsble``'s own advertisement matchers.

Each BMS family in the library says which advertisements are its own (``matcher_dict_list()``).
Home Assistant starts a discovery flow from the ``bluetooth`` matchers in ``manifest.json``, and
those know fewer keys and stricter name patterns than the library's, so each library matcher is
translated by the rules below. Translation only ever widens a matcher or drops it: the flow then
asks the library itself (``bms_identify``) which family an advertisement belongs to, so a wider
matcher costs a discovery flow that ends quietly, never a wrong family.

* ``oui`` (the address's first three bytes): Home Assistant has no such matcher key, and a
  random-address device would not keep it anyway. Dropped; the rest of the matcher stays.
* ``service_data_uuid: ""`` means "advertises no service data" in the library; Home Assistant
  can only ask for a UUID that is present. Dropped.
* ``local_name`` whose first three characters are not all literal (``*``, ``?`` or ``[``):
  Home Assistant indexes name matchers by their first three characters and hassfest refuses
  such patterns. Dropped, when the matcher keeps a service UUID, service data UUID or
  manufacturer id; otherwise the whole matcher is dropped, since a bare ``connectable`` would
  match every device in range. Such a BMS is still offered in the "Bluetooth BMS" step, which
  asks the library about every advertisement Home Assistant has heard.
* The library's ``dummy`` family (a placeholder for its tests) is left out.
* A matcher that a wider one already covers (all the wider one's keys with the same values,
  e.g. a name plus service UUID ``ff00`` next to a widened bare ``ff00``) is left out: Home
  Assistant would start the same single flow for it.

``scripts/bluetooth_matchers.py`` writes the result into ``manifest.json``; a test fails when the
two differ for the pinned library version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

LOCAL_NAME_LITERAL: Final = 3
"""Home Assistant indexes ``local_name`` matchers by this many leading literal characters."""
_WILDCARDS: Final = frozenset("*?[")
_SELECTIVE_KEYS: Final = ("service_uuid", "service_data_uuid", "manufacturer_id")
HA_KEYS: Final = (
    "local_name",
    "service_uuid",
    "service_data_uuid",
    "manufacturer_id",
    "manufacturer_data_start",
    "connectable",
)
"""The keys of a manifest ``bluetooth`` matcher, in the order they are written."""
SKIPPED_FAMILIES: Final = frozenset({"dummy_bms"})


@dataclass(frozen=True, slots=True)
class Translation:
    """One library matcher and what became of it: the manifest matcher, or None and why."""

    family: str
    source: Mapping[str, Any]
    matcher: dict[str, Any] | None
    notes: tuple[str, ...]


def library_matchers() -> dict[str, list[dict[str, Any]]]:
    """Every BMS family the installed ``aiobmsble`` knows (module name) and its matchers."""
    from aiobmsble.utils import load_bms_plugins  # type: ignore[import-untyped]

    families: dict[str, list[dict[str, Any]]] = {}
    for module in load_bms_plugins():
        family = module.__name__.rsplit(".", 1)[-1]
        if family in SKIPPED_FAMILIES:
            continue
        families[family] = [dict(matcher) for matcher in module.BMS.matcher_dict_list()]
    return dict(sorted(families.items()))


def literal_prefix_ok(pattern: str) -> bool:
    """Whether a name pattern starts with enough literal characters for Home Assistant."""
    head = pattern[:LOCAL_NAME_LITERAL]
    return len(head) == LOCAL_NAME_LITERAL and not _WILDCARDS & set(head)


def translate(family: str, source: Mapping[str, Any]) -> Translation:
    """The manifest matcher for one library matcher (see the module docstring for the rules)."""
    notes: list[str] = []
    matcher = {key: source[key] for key in HA_KEYS if key in source}
    if "oui" in source:
        notes.append(f"oui {source['oui']} dropped: no such key in Home Assistant")
    if matcher.get("service_data_uuid") == "":
        del matcher["service_data_uuid"]
        notes.append("'no service data' dropped: Home Assistant cannot match an absence")
    name = matcher.get("local_name")
    if name is not None and not literal_prefix_ok(name):
        del matcher["local_name"]
        notes.append(f"local_name {name!r} dropped: fewer than 3 leading literal characters")
    if not any(key in matcher for key in ("local_name", *_SELECTIVE_KEYS)):
        notes.append("matcher dropped: nothing selective left")
        return Translation(family, source, None, tuple(notes))
    if "manufacturer_data_start" in matcher:
        matcher["manufacturer_data_start"] = list(matcher["manufacturer_data_start"])
    matcher.setdefault("connectable", True)
    return Translation(family, source, matcher, tuple(notes))


def translations() -> list[Translation]:
    """Every library matcher of every family, translated."""
    return [
        translate(family, source)
        for family, sources in library_matchers().items()
        for source in sources
    ]


def covers(wide: Mapping[str, Any], narrow: Mapping[str, Any]) -> bool:
    """Whether every advertisement ``narrow`` accepts is also accepted by ``wide``."""
    return all(key in narrow and narrow[key] == value for key, value in wide.items())


def manifest_matchers() -> list[dict[str, Any]]:
    """The BMS matchers for ``manifest.json``: translated, none covered by another, in order."""
    matchers: list[dict[str, Any]] = []
    for item in translations():
        if item.matcher is not None and item.matcher not in matchers:
            matchers.append(item.matcher)
    return [
        matcher
        for matcher in matchers
        if not any(other is not matcher and covers(other, matcher) for other in matchers)
    ]
