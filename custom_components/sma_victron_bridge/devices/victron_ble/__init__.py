"""Victron Bluetooth devices (Instant Readout, GATT control): runtime, entities, flow."""
