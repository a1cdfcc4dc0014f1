"""VE.Direct devices (MPPT chargers, battery monitors) on a serial port: runtime, entities, flow."""
