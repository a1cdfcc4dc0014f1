"""The VE.Direct HEX registers this integration reads and writes, with their user-facing names."""

from __future__ import annotations

from typing import Final

REG_SERIAL_NUMBER: Final = 0x010A
REG_BATTERY_VOLTAGE_SETTING: Final = 0xEDEF  # nominal system voltage: 12/24/36/48 V
REG_BATTERY_MAX_CURRENT: Final = 0xEDF0
REG_FLOAT_VOLTAGE: Final = 0xEDF6
REG_ABSORPTION_VOLTAGE: Final = 0xEDF7
REG_LOAD_OUTPUT_CONTROL: Final = 0xEDAB
REG_SENSE_VOLTAGE: Final = 0x2002
REG_SENSE_TEMPERATURE: Final = 0x2003

# Settings an MPPT exposes as entities, read at connect and refreshed periodically.
MPPT_SETTINGS: Final = (
    REG_BATTERY_VOLTAGE_SETTING,
    REG_BATTERY_MAX_CURRENT,
    REG_FLOAT_VOLTAGE,
    REG_ABSORPTION_VOLTAGE,
    REG_LOAD_OUTPUT_CONTROL,
)

LOAD_OUTPUT_OPTIONS: Final[dict[int, str]] = {
    0: "off",
    1: "auto",
    2: "alternative_1",
    3: "alternative_2",
    4: "on",
    5: "user_1",
    6: "user_2",
    7: "automatic_energy_selector",
}
