"""Device drivers: each a Micro-Manager Python device (pymmcore-plus UniMMCore) over a real hardware
API (SCPI over pyvisa, the Thorlabs TSI camera SDK). The same code drives hardware and simulators;
nothing here knows of the harness or of any simulator."""
