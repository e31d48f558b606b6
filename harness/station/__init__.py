"""The station: its YAML file, the devices built from it (real or simulated) through the registry of
driver kinds (``harness.station.drivers``), roles, the station lock and the guard that keeps two
runs off one microscope."""
