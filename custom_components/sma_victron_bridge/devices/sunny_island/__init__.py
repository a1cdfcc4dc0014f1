"""An SMA Sunny Island on a CAN bus, with this integration as its BMS: runtime, entities, flow."""
