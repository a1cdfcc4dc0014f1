"""Every entity, enum option, flow step and error has English text, and nothing stale remains."""

from __future__ import annotations

import json
from pathlib import Path

from homeassistant.components.sensor import SensorDeviceClass

from custom_components.sma_victron_bridge.devices.vedirect_entities import (
    BINARY_SENSORS,
    NUMBERS,
    SELECTS,
    SENSORS,
)

PACKAGE = Path(__file__).parent.parent / "custom_components" / "sma_victron_bridge"
EN = json.loads((PACKAGE / "translations" / "en.json").read_text())
ICONS = json.loads((PACKAGE / "icons.json").read_text())


def test_every_sensor_and_enum_option_is_translated() -> None:
    sensors = EN["entity"]["sensor"]
    for description in SENSORS:
        assert description.translation_key in sensors, description.key
        if description.device_class is SensorDeviceClass.ENUM:
            states = sensors[description.translation_key]["state"]
            assert description.options is not None
            missing = set(description.options) - set(states)
            assert missing == set(), (description.key, missing)


def test_other_platforms_are_translated() -> None:
    for platform, descriptions in (
        ("binary_sensor", BINARY_SENSORS),
        ("number", NUMBERS),
        ("select", SELECTS),
    ):
        for description in descriptions:
            assert description.translation_key in EN["entity"][platform], description.key
    for description in SELECTS:
        assert description.options is not None
        assert set(description.options) == set(
            EN["entity"]["select"][str(description.translation_key)]["state"]
        )


def test_no_translation_or_icon_for_entities_that_do_not_exist() -> None:
    keys = {str(d.translation_key) for d in (*SENSORS, *BINARY_SENSORS, *NUMBERS, *SELECTS)}
    for platform in ("sensor", "binary_sensor", "number", "select"):
        assert set(EN["entity"][platform]) <= keys
        assert set(ICONS["entity"].get(platform, {})) <= keys
