"""Pure domain of the gateway: no I/O, time and randomness injected."""
