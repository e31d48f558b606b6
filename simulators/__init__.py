"""The virtual microscope: ground-truth physics of light sources, power meter, stages and camera,
plus the front ends (SCPI server on loopback, a TSI-SDK-compatible module, Micro-Manager Python
devices) that make it look like hardware to the real drivers.

Nothing here knows of ``devices`` or ``harness``.
"""
