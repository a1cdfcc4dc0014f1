"""Every entity, enum option, flow step and error has English text, and nothing stale remains."""

from __future__ import annotations

import json
from pathlib import Path

from homeassistant.components.sensor import SensorDeviceClass

from custom_components.sma_victron_bridge.control.chemistry import BOOL_FIELDS, NUMBER_FIELDS
from custom_components.sma_victron_bridge.devices.battery_bank import entities as bank
from custom_components.sma_victron_bridge.devices.ble_bms import entities as ble_bms
from custom_components.sma_victron_bridge.devices.serial_bms import entities as bms
from custom_components.sma_victron_bridge.devices.sunny_boy import entities as sb
from custom_components.sma_victron_bridge.devices.sunny_island import entities as si
from custom_components.sma_victron_bridge.devices.vedirect import entities as ved
from custom_components.sma_victron_bridge.devices.victron_ble import entities as vble
from custom_components.sma_victron_bridge.flow_helpers import OPTION_SETTINGS, OPTION_SWITCHES

SENSORS = (*ved.SENSORS, *bms.SENSORS, *si.SENSORS, *sb.SENSORS)
BINARY_SENSORS = (*ved.BINARY_SENSORS, *bms.BINARY_SENSORS, *si.BINARY_SENSORS)
SENSORS = (*SENSORS, *vble.SENSORS, *ble_bms.SENSORS)
BINARY_SENSORS = (*BINARY_SENSORS, *vble.BINARY_SENSORS, *ble_bms.BINARY_SENSORS)
SENSORS = (*SENSORS, *bank.SENSORS, *bank.PROBLEM_SENSORS)
BINARY_SENSORS = (*BINARY_SENSORS, *bank.PROBLEM_BINARY_SENSORS)
NUMBERS = (*ved.NUMBERS, *si.NUMBERS)
SELECTS = (*ved.SELECTS, *si.SELECTS)
SELECTS = (*SELECTS, *vble.SELECTS)
SWITCHES = bms.SWITCHES
BUTTONS = si.BUTTONS

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
        ("switch", SWITCHES),
        ("button", BUTTONS),
    ):
        for description in descriptions:
            assert description.translation_key in EN["entity"][platform], description.key
    for description in SELECTS:
        assert description.options is not None
        assert set(description.options) == set(
            EN["entity"]["select"][str(description.translation_key)]["state"]
        )


def test_every_entity_without_a_device_class_icon_has_its_own() -> None:
    """Home Assistant picks an icon from the device class; without one (or for an enum) the
    entity would show the generic one, so icons.json names one (with on/off states where the
    meaning flips)."""
    for platform, descriptions in (
        ("sensor", SENSORS),
        ("binary_sensor", BINARY_SENSORS),
        ("number", NUMBERS),
        ("select", SELECTS),
        ("switch", SWITCHES),
        ("button", BUTTONS),
    ):
        icons = ICONS["entity"].get(platform, {})
        for description in descriptions:
            device_class = getattr(description, "device_class", None)
            if device_class is None or device_class == SensorDeviceClass.ENUM:
                assert str(description.translation_key) in icons, (platform, description.key)
                assert icons[str(description.translation_key)]["default"].startswith("mdi:")


def test_no_translation_or_icon_for_entities_that_do_not_exist() -> None:
    every = (*SENSORS, *BINARY_SENSORS, *NUMBERS, *SELECTS, *SWITCHES, *BUTTONS)
    keys = {str(d.translation_key) for d in every}
    for platform in ("sensor", "binary_sensor", "number", "select", "switch", "button"):
        assert set(EN["entity"][platform]) <= keys
        assert set(ICONS["entity"].get(platform, {})) <= keys


def test_one_meaning_per_translation_key() -> None:
    """Kinds share translation keys per platform: a shared key must mean the same options."""
    by_key: dict[str, set[str]] = {}
    for description in SENSORS:
        if description.options is not None:
            options = by_key.setdefault(str(description.translation_key), set(description.options))
            assert options == set(description.options), description.key


def test_placeholders_are_filled() -> None:
    """Names with {placeholders} get them from the description, and only those."""
    import re

    every = (*SENSORS, *BINARY_SENSORS)
    for description in every:
        platform = "sensor" if description in SENSORS else "binary_sensor"
        name = EN["entity"][platform][str(description.translation_key)]["name"]
        wanted = set(re.findall(r"{(\w+)}", name))
        given = set(description.translation_placeholders or {})
        assert wanted == given, description.key


def test_every_option_field_has_a_label() -> None:
    """The BMS and Sunny Island options offer every tuned setting; each needs its English label."""
    numbers = {name for name, _step, _unit in OPTION_SETTINGS}
    # Everything a number entity edits is in the options too (the battery itself aside).
    assert set(NUMBER_FIELDS) - {"cells", "capacity_ah"} == numbers
    assert set(si.SETTING_ENTITIES) <= numbers
    assert set(OPTION_SWITCHES) <= set(BOOL_FIELDS)
    for step, wanted in (
        ("charge_settings", {*numbers, *OPTION_SWITCHES, "guard_time"}),
        ("bms_settings", {*numbers, "poll_interval"}),
    ):
        labels = EN["options"]["step"][step]["data"]
        assert wanted == set(labels), step


def test_every_form_field_is_described() -> None:
    """Every field of every config and options form says what it is for, next to the field."""
    for section in ("config", "options"):
        for step_id, step in EN[section]["step"].items():
            labels = set(step.get("data", {}))
            descriptions = set(step.get("data_description", {}))
            assert labels == descriptions, (section, step_id, labels ^ descriptions)


def test_charge_setting_descriptions_give_the_unit() -> None:
    """A charge setting's description starts with its unit: the form shows it only as a suffix."""
    units = ("Volts", "Amperes", "Millivolts", "Seconds", "Percent", "Days")
    descriptions = EN["options"]["step"]["charge_settings"]["data_description"]
    for name, _step, _unit in OPTION_SETTINGS:
        assert descriptions[name].startswith(units), name
