"""The manifest's Bluetooth BMS matchers follow the installed ``aiobmsble``'s own matchers.

Home Assistant starts discovery from ``manifest.json``; the library decides which family a BMS is.
These tests hold the two together: with the pinned library the manifest is exactly what
``scripts/bluetooth_matchers.py`` writes, and with any supported library (0.28.0 on the oldest
Home Assistant) an advertisement the library would take as one of its families starts a flow
through Home Assistant's own matcher code.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
import re
import sys
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from homeassistant.components import bluetooth
from homeassistant.components.bluetooth.match import ble_device_matches
import pytest

from custom_components.sma_victron_bridge.devices.ble_bms.matchers import (
    covers,
    library_matchers,
    literal_prefix_ok,
    manifest_matchers,
    translate,
    translations,
)

ROOT = Path(__file__).parents[2]
MANIFEST = ROOT / "custom_components" / "sma_victron_bridge" / "manifest.json"
PINNED = re.search(
    r"^aiobmsble==(\S+)$", (ROOT / "requirements_test.txt").read_text(), re.MULTILINE
)
VICTRON = {"manufacturer_id": 737, "connectable": False}


def installed_version() -> str:
    from importlib.metadata import version

    return version("aiobmsble")


def manifest_bms_matchers() -> list[dict[str, Any]]:
    return [m for m in json.loads(MANIFEST.read_text())["bluetooth"] if m != VICTRON]


def name_for(pattern: str) -> str:
    """A device name the shell-style ``pattern`` accepts."""
    name: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "[":
            end = pattern.index("]", i + 1)
            name.append(pattern[i + 1])
            i = end + 1
            continue
        name.append({"*": "", "?": "X"}.get(char, char))
        i += 1
    return "".join(name)


def advert_for(matcher: dict[str, Any]) -> bluetooth.BluetoothServiceInfoBleak:
    """An advertisement, as Home Assistant sees it, that the library matcher accepts."""
    name = name_for(matcher["local_name"]) if "local_name" in matcher else "BMS"
    manufacturer: dict[int, bytes] = {}
    if "manufacturer_id" in matcher:
        manufacturer[matcher["manufacturer_id"]] = bytes(
            matcher.get("manufacturer_data_start", [])
        ) + bytes(4)
    service_data = (
        {matcher["service_data_uuid"]: b"\x01"} if matcher.get("service_data_uuid") else {}
    )
    uuids = [matcher["service_uuid"]] if "service_uuid" in matcher else []
    address = (matcher.get("oui", "C0:FF:EE") + ":00:00:01")[:17]
    advertisement = AdvertisementData(
        local_name=name,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=uuids,
        tx_power=None,
        rssi=-60,
        platform_data=(),
    )
    return bluetooth.BluetoothServiceInfoBleak(
        name=name,
        address=address,
        rssi=-60,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=uuids,
        source="local",
        device=BLEDevice(address, name, {}),
        advertisement=advertisement,
        connectable=True,
        time=0.0,
        tx_power=None,
    )


@pytest.mark.skipif(
    PINNED is None or installed_version() != PINNED.group(1),
    reason="the manifest is generated from the pinned aiobmsble; older ones are checked below",
)
def test_manifest_is_what_the_pinned_library_gives() -> None:
    assert manifest_bms_matchers() == manifest_matchers()
    assert json.loads(MANIFEST.read_text())["bluetooth"][0] == VICTRON
    spec = importlib.util.spec_from_file_location(
        "bluetooth_matchers", ROOT / "scripts" / "bluetooth_matchers.py"
    )
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    sys.modules["bluetooth_matchers"] = script
    spec.loader.exec_module(script)
    assert script.main(["--check"]) == 0
    text = MANIFEST.read_text()
    # Rewriting only replaces the list: everything else stays byte for byte.
    changed = script.render(text, [VICTRON])
    assert json.loads(changed) == {**json.loads(text), "bluetooth": [VICTRON]}
    assert changed.split('"bluetooth"')[0] == text.split('"bluetooth"')[0]
    assert script.render(text, script.kept_matchers(json.loads(text)) + manifest_matchers()) == text


def test_every_family_the_library_knows_is_discovered() -> None:
    """Any supported library: an advert of each family starts a flow through HA's matching."""
    manifest = manifest_bms_matchers()
    families = library_matchers()
    pinned = PINNED is not None and installed_version() == PINNED.group(1)
    assert {"jikong_bms", "jbd_bms", "daly_bms"} <= set(families)
    for family, sources in families.items():
        found = []
        for source in sources:
            info = advert_for(source)
            found.append(any(ble_device_matches(m, info) for m in manifest))  # type: ignore[arg-type]
            if pinned and translate(family, source).matcher is not None:
                # Every matcher that survives translation is covered on its own; an older
                # library may name a few more models, found by the device list instead.
                assert found[-1], (family, source)
        assert any(found), family


def test_matchers_are_what_hassfest_and_home_assistant_accept() -> None:
    allowed = {
        "local_name",
        "service_uuid",
        "service_data_uuid",
        "manufacturer_id",
        "manufacturer_data_start",
        "connectable",
    }
    for matcher in manifest_bms_matchers():
        assert set(matcher) <= allowed, matcher
        assert set(matcher) - {"connectable", "manufacturer_data_start"}, matcher
        if "local_name" in matcher:
            assert literal_prefix_ok(matcher["local_name"]), matcher
        if "manufacturer_data_start" in matcher:
            assert "manufacturer_id" in matcher
        assert matcher["connectable"] is True
        for uuid in (matcher.get("service_uuid"), matcher.get("service_data_uuid")):
            assert uuid is None or uuid == uuid.lower()
    # No matcher is covered by another one: each one is a reason for a flow of its own.
    matchers = manifest_bms_matchers()
    for matcher in matchers:
        assert not any(o is not matcher and covers(o, matcher) for o in matchers), matcher


def test_translation_rules() -> None:
    oui = translate("x_bms", {"oui": "A4:C1:37", "service_uuid": "ff00", "connectable": True})
    assert oui.matcher == {"service_uuid": "ff00", "connectable": True}
    assert "oui" in oui.notes[0]
    absent = translate(
        "x_bms",
        {
            "service_uuid": "ffe0",
            "service_data_uuid": "",
            "manufacturer_id": 0,
            "connectable": True,
        },
    )
    assert absent.matcher == {"service_uuid": "ffe0", "manufacturer_id": 0, "connectable": True}
    short = translate("x_bms", {"local_name": "SH*", "service_uuid": "fffa"})
    assert short.matcher == {"service_uuid": "fffa", "connectable": True}
    bare = translate("x_bms", {"local_name": "G-[0-5]*", "connectable": True})
    assert bare.matcher is None
    assert "nothing selective" in bare.notes[-1]
    kept = translate("x_bms", {"local_name": "JK-B*", "manufacturer_data_start": (1, 2)})
    assert kept.matcher == {
        "local_name": "JK-B*",
        "manufacturer_data_start": [1, 2],
        "connectable": True,
    }
    assert not literal_prefix_ok("AB")
    assert not literal_prefix_ok("A?C")
    assert literal_prefix_ok("ABC")
    assert all(item.family != "dummy_bms" for item in translations())
