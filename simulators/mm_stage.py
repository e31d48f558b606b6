"""Micro-Manager Python devices (pymmcore-plus UniMMCore) for the simulated XY stage and Z drive.

They report the commanded position and a busy state while moving and settling, in virtual time,
like an open-loop stepper controller; the true position stays inside the world model.
"""

from __future__ import annotations

from pymmcore_plus.experimental.unicore import StageDevice, XYStageDevice

from .stage import StageModel, StageRefused


class SimulatedXYStage(XYStageDevice):
    """Simulated motorized XY stage."""

    def __init__(self, model: StageModel, description: str = "Simulated XY stage") -> None:
        super().__init__()
        self._model = model
        self._origin = (0.0, 0.0)
        self._description = description

    def description(self) -> str:
        return self._description

    def set_position_um(self, x: float, y: float) -> None:
        try:
            self._model.move({"x": x + self._origin[0], "y": y + self._origin[1]})
        except StageRefused as exc:
            raise ValueError(str(exc)) from None

    def get_position_um(self) -> tuple[float, float]:
        c = self._model.commanded()
        return (c["x"] - self._origin[0], c["y"] - self._origin[1])

    def set_origin_x(self) -> None:
        self._origin = (self._model.commanded()["x"], self._origin[1])

    def set_origin_y(self) -> None:
        self._origin = (self._origin[0], self._model.commanded()["y"])

    def home(self) -> None:
        self._model.move({"x": 0.0, "y": 0.0})
        self._origin = (0.0, 0.0)

    def stop(self) -> None:
        self._model.stop()

    def busy(self) -> bool:
        return self._model.busy()


class SimulatedZDrive(StageDevice):
    """Simulated motorized focus drive."""

    def __init__(self, model: StageModel, description: str = "Simulated Z drive") -> None:
        super().__init__()
        self._model = model
        self._origin = 0.0
        self._description = description

    def description(self) -> str:
        return self._description

    def set_position_um(self, val: float) -> None:
        try:
            self._model.move({"z": val + self._origin})
        except StageRefused as exc:
            raise ValueError(str(exc)) from None

    def get_position_um(self) -> float:
        return self._model.commanded()["z"] - self._origin

    def set_origin(self) -> None:
        self._origin = self._model.commanded()["z"]

    def home(self) -> None:
        self._model.move({"z": 0.0})
        self._origin = 0.0

    def stop(self) -> None:
        self._model.stop()

    def busy(self) -> bool:
        return self._model.busy()
