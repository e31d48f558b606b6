"""``acquire``: frames into an image stack; the plan fixes each frame's place (channel, t) in advance."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema, model_validator

from harness.common.optics import ASSUMED_OPTICS, axial_fwhm_um, nyquist_axial_um
from harness.common.safe_paths import PlainNameOrVariables
from harness.common.units import LENGTH_UM, PositiveDistance, PositiveSeconds, parse_quantity
from harness.protocol.steps.base import FRAME_OVERHEAD_S, MOVE_ESTIMATE_S, Action, Expansion, StackPlan, StepKind, VarRef, _Model

MAX_Z_PLANES = 2001
Z_PLANE_MOVE_S = 0.1  # a step of a fraction of a micrometre and its settling (estimate for the ETA)


def _nyquist_or_distance(value: Any) -> Any:
    if value == "nyquist":
        return value
    try:
        number = parse_quantity(value, LENGTH_UM, "distance")
    except ValueError:
        raise ValueError(f"'nyquist' or a distance between planes such as '0.2 um' (got {value!r})") from None
    if number <= 0:
        raise ValueError(f"a distance between planes is more than zero (got {value!r})")
    return number


NyquistOrDistance = Annotated[
    Literal["nyquist"] | float,
    BeforeValidator(_nyquist_or_distance),
    PlainSerializer(lambda v: v if v == "nyquist" else f"{v:g} um"),
    WithJsonSchema({"anyOf": [{"const": "nyquist"}, {"type": "string", "pattern": r"^\s*(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*(um|µm|nm|mm)\s*$"}]}),
]


class ZStackParams(_Model):
    """A z-stack through the Z drive's position where the step starts (its centre): planes from
    bottom to top, each approached from below, then back to the centre. Step and extent follow
    from the objective (station file: instrument, objective_in_use) and the run's laser lines:
    ``step: nyquist`` is the widefield axial Nyquist step (``lambda / (2 n (1 - cos alpha))``, at the
    run's shortest line) divided by ``oversample``; the extent is ``extent`` or ``extent_fwhm``
    theoretical axial FWHMs (``0.88 lambda / (n - sqrt(n^2 - NA^2))``, at the run's longest line)."""

    step: NyquistOrDistance = Field(default="nyquist", description="'nyquist' or a distance between planes")
    oversample: float = Field(default=2.0, ge=1, le=20, description="with step: nyquist, planes this many times closer than Nyquist")
    extent: PositiveDistance | None = Field(default=None, description="full height of the z-stack (default: extent_fwhm axial FWHMs)")
    extent_fwhm: float = Field(default=8.0, gt=0, le=200, description="full height in theoretical axial FWHMs, when extent is not given")
    overtravel: PositiveDistance = Field(default=5.0, description="each z-stack starts this far below its first plane (backlash taken up)")

    @model_validator(mode="after")
    def _consistent(self) -> ZStackParams:
        if self.extent is not None and "extent_fwhm" in self.model_fields_set:
            raise ValueError("give extent or extent_fwhm, not both")
        if self.step != "nyquist" and "oversample" in self.model_fields_set:
            raise ValueError("oversample goes with step: nyquist")
        return self


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
    z_stack: ZStackParams | None = Field(default=None, description="one z-stack (the stack's Z dimension) instead of single frames")

    @model_validator(mode="after")
    def _one_roi(self) -> AcquireParams:
        if self.roi is not None and self.centre_roi is not None:
            raise ValueError("give roi or centre_roi, not both")
        if self.z_stack is not None and self.frames != 1:
            raise ValueError("a z_stack takes one frame per plane: leave 'frames' out")
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
        count = params.frames
        if params.z_stack is not None or stack.z_planes > 1:
            plan.roles.add("z_drive")
            action.z_offsets_um = z_planes(params, stack, plan, loc)
            count = len(action.z_offsets_um)
        action.frames = [(c, first + k) for k in range(count)]
        action.channel = channel
        stack.frames_per_channel[channel] += count
        action.estimate_s = count * (plan.exposure_s + FRAME_OVERHEAD_S)
        if action.z_offsets_um:
            action.estimate_s += count * Z_PLANE_MOVE_S + 3 * MOVE_ESTIMATE_S  # the planes, the start below, the return


def z_planes(params: Any, stack: StackPlan, plan: Expansion, loc: tuple[Any, ...]) -> list[float]:
    """The planes (offsets from the centre, um, bottom to top) of one z-stack; the stack keeps the
    first z-stack's planes, and every later one must have the same (``UserError`` otherwise)."""
    z = params.z_stack
    if z is None:
        raise plan.error(loc + ("acquire",), f"acquire: stack {params.stack} holds z-stacks of {stack.z_planes} planes: give this acquire "
                                             "the same z_stack, or name another stack")
    optics = plan.optics or ASSUMED_OPTICS
    waves = [float(line) for line in plan.lines if line.replace(".", "", 1).isdigit()] or [500.0]
    step = nyquist_axial_um(min(waves), optics) / z.oversample if z.step == "nyquist" else float(z.step)
    step = max(round(step, 3), 0.001)  # whole nanometres: what a Z drive can be sent to
    extent = float(z.extent) if z.extent is not None else z.extent_fwhm * axial_fwhm_um(max(waves), optics)
    half = max(round(extent / 2 / step), 1)
    if 2 * half + 1 > MAX_Z_PLANES:
        raise plan.error(loc + ("acquire", "z_stack"), f"acquire: z_stack: {2 * half + 1} planes ({extent:.4g} um in steps of {step:.4g} um); "
                                                       f"at most {MAX_Z_PLANES}: a larger step or a smaller extent")
    offsets = [round((k - half) * step, 6) for k in range(2 * half + 1)]
    if not any(stack.frames_per_channel.values()):  # the stack's first acquire
        stack.z_planes, stack.z_step_um = len(offsets), step
    elif stack.z_planes == 1:
        raise plan.error(loc + ("acquire", "z_stack"), f"acquire: stack {params.stack} holds single frames: a z-stack goes into a stack of its own")
    elif (stack.z_planes, stack.z_step_um) != (len(offsets), step):
        raise plan.error(loc + ("acquire", "z_stack"), f"acquire: stack {params.stack}: a z-stack of {len(offsets)} planes {step:g} um apart, but "
                                                       f"the stack's first one has {stack.z_planes} planes {stack.z_step_um or 0:g} um apart: "
                                                       "a stack holds z-stacks of one shape (name another stack)")
    return offsets


KIND = Acquire()
