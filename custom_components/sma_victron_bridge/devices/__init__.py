"""Home Assistant glue of each device kind, one package per kind, and the table of the kinds.

A kind's package ``devices/<kind>/`` holds everything Home Assistant needs of it:

- ``runtime.py``: its ``DeviceRuntime`` (connection, coordinator, entities to set up);
- ``entities.py``: its entity descriptions;
- ``flow.py``: its ``ConfigFlow`` mixin (the ``async_step_<kind>`` menu entry and the other
  steps, ``async_step_<kind>_reconfigure``, ``_async_start_simulated_<kind>(choice)`` for the
  choices of its ``SIMULATED`` table) and its ``OptionsFlow``;
- the helpers only that kind uses.

What the kinds share stays beside this file (``base.py``, ``battery_source.py``…). Adding a kind is
its package plus one line in ``KINDS``; the config flow and the set-up in ``__init__.py`` read
everything else from there. Only names are listed here: a kind's runtime pulls in its protocol
libraries and is imported in Home Assistant's import executor when an entry is set up.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..const import DeviceKind


@dataclass(frozen=True, slots=True)
class Kind:
    """One device kind and the names in its package that the integration looks up."""

    kind: DeviceKind
    runtime: str
    """What builds an entry's ``DeviceRuntime`` in ``runtime.py``: its class, or a function of
    ``(hass, entry)`` where one kind runs different runtimes (one BMS, or a bus of packs)."""
    flow: str
    """The ``ConfigFlow`` mixin in ``flow.py``."""
    options_flow: str
    """The ``OptionsFlow`` in ``flow.py``."""
    supports_options: str | None = None
    """The function in ``flow.py`` that says whether an entry has options; None: every entry."""

    @property
    def package(self) -> str:
        """The kind's package, ``…devices.<kind>``."""
        return f"{__name__}.{self.kind.value}"


KINDS: tuple[Kind, ...] = (
    Kind(
        DeviceKind.VEDIRECT,
        "VeDirectRuntime",
        "VeDirectFlow",
        "VeDirectOptionsFlow",
        "vedirect_supports_options",
    ),
    Kind(DeviceKind.SERIAL_BMS, "create_runtime", "SerialBmsFlow", "SerialBmsOptionsFlow"),
    Kind(
        DeviceKind.SUNNY_ISLAND, "SunnyIslandRuntime", "SunnyIslandFlow", "SunnyIslandOptionsFlow"
    ),
    Kind(DeviceKind.SUNNY_BOY, "SunnyBoyRuntime", "SunnyBoyFlow", "SunnyBoyOptionsFlow"),
    Kind(
        DeviceKind.VICTRON_BLE,
        "VictronBleRuntime",
        "VictronBleFlow",
        "VictronBleOptionsFlow",
        "victron_ble_supports_options",
    ),
    Kind(DeviceKind.BLE_BMS, "BleBmsRuntime", "BleBmsFlow", "BleBmsOptionsFlow"),
    Kind(
        DeviceKind.BATTERY_BANK, "BatteryBankRuntime", "BatteryBankFlow", "BatteryBankOptionsFlow"
    ),
)
"""Every device kind, in the order of the user menu (and of the simulated-device list)."""

KIND_BY_ID: dict[DeviceKind, Kind] = {kind.kind: kind for kind in KINDS}
