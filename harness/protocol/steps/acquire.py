"""``acquire``: frames into an image stack; the plan fixes each frame's place (channel, t) in advance."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from harness.common.safe_paths import PlainNameOrVariables
from harness.common.units import PositiveSeconds
from harness.protocol.steps.base import FRAME_OVERHEAD_S, Action, Expansion, StackPlan, StepKind, VarRef, _Model


class AcquireParams(_Model):
    """Acquire frames into an image stack (one OME-TIFF per stack; channels = laser lines)."""

    stack: PlainNameOrVariables = Field(description="name of the stack file (<stack>.ome.tif in the run folder)")
    frames: int | VarRef = Field(default=1, ge=1, le=100000)
    exposure: PositiveSeconds | VarRef | None = None
    dark: bool = False
    tag: str = Field(default="", max_length=64, description="a label in the frame log (not a file name)")
    roi: tuple[int, int, int, int] | None = Field(default=None, description="camera pixels: x, y, width, height; default full frame")
    centre_roi: tuple[int, int] | None = Field(default=None, description="camera pixels: width, height of a region centred on the sensor")
    binning: int | None = Field(default=None, ge=1, le=16)

    @model_validator(mode="after")
    def _one_roi(self) -> AcquireParams:
        if self.roi is not None and self.centre_roi is not None:
            raise ValueError("give roi or centre_roi, not both")
        return self


class AcquireStep(_Model):
    acquire: AcquireParams


class Acquire(StepKind):
    key = "acquire"
    model = AcquireStep

    def limit_checks(self, params: Any) -> list[tuple[str, str, Any]]:
        return [("exposure", "max_exposure", params.exposure)]

    def expand(self, params: Any, action: Action, plan: Expansion, loc: tuple[Any, ...]) -> None:
        plan.roles.add("camera")
        if params.exposure is not None:
            plan.exposure_s = float(params.exposure)
        channel = "dark" if params.dark or not plan.emitting else "+".join(sorted(plan.emitting, key=float))
        stack = plan.stacks.setdefault(params.stack, StackPlan(params.stack))
        if channel not in stack.channels:
            stack.channels.append(channel)
            stack.frames_per_channel[channel] = 0
        c = stack.channels.index(channel)
        first = stack.frames_per_channel[channel]
        action.frames = [(c, first + k) for k in range(params.frames)]
        action.channel = channel
        stack.frames_per_channel[channel] += params.frames
        action.estimate_s = params.frames * (plan.exposure_s + FRAME_OVERHEAD_S)


KIND = Acquire()
