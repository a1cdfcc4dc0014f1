"""Pure device simulators that speak the real wire protocols over real transports."""
