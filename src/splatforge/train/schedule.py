"""Training schedules fitted to a time budget: what each step does as a function of the run's progress.

gsplat's recipe is written in steps (30,000 of them: the means' rate decays to 1% at the last one,
the SH degree rises every 1,000, refinement runs from 500 to 15,000 every 100 with an opacity
reset every 3,000). Cut by a wall-time budget on a CPU, such a run stops after a few thousand
steps with its rate undecayed and the scene still densifying. `BudgetSchedule` instead maps
progress p in [0, 1] to every one of those settings (`FittedSchedule` says where each falls), with

    p = (seconds trained so far + the next step's predicted seconds) / budget,

so p rises monotonically with time whatever the step rate does, and the run ends at its final
learning rate with densification finished whenever the budget runs out. The one setting that
must stay in steps, the interval between refinements (each refinement reads statistics gathered
over the steps since the last one), comes from an estimate of the steps the budget affords: step
time (wall time from one step's end to the next's, so checkpoints and evaluations count) is
modelled as a + b x (Gaussian count), fitted to the measured step times and re-fitted every
`REFIT_EVERY` steps, and the remaining time divided by the predicted step time gives the
remaining steps. Events (refinements, opacity resets) fire when progress crosses them and are
counted in the schedule's state, so a re-estimate never repeats or skips one, and a run resumed
from a checkpoint continues from the trained seconds stored in it.

Time comes from `clock` (default `time.perf_counter`); tests pass a fake one.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

REFIT_EVERY = 20  # steps between re-fits of the step-time model
SAMPLES = 200  # recent steps the model is fitted to


@dataclass
class FittedSchedule:
    """Where gsplat's step-based settings fall in a run fitted to a time budget, as fractions of it.

    Compressed like `splatforge demo`'s hand-made 3,000-step schedule (refine from 7% to 83%, one
    reset, SH every 10%), which a short CPU run needs: gsplat's 30,000-step proportions leave half
    of the run without densification and space the resets for a run ten times longer."""

    refine_start: float = 0.07  # first refinement once this much of the budget is used
    refine_stop: float = 0.8  # no refinement (and no opacity reset) after this fraction
    refinements: int = 20  # refinements the window should hold: sets the steps between them
    min_refine_every: int = 50  # ... but never fewer steps apart than this (each reads the statistics since the last)
    max_refine_every: int = 100  # ... nor more (gsplat's interval)
    reset_every: float = 0.5  # opacity resets at multiples of this fraction, inside the refine window
    sh_degree_every: float = 0.1  # raise the SH degree by one every this fraction
    scale2d_stop: float = 0.0  # default strategy: screen-size split/prune rules until this fraction (0: never)

    def check(self) -> None:
        from ..errors import SplatforgeError

        if not 0.0 <= self.refine_start < self.refine_stop <= 1.0:
            raise SplatforgeError(f"fitted schedule: need 0 <= refine_start < refine_stop <= 1, got "
                                  f"{self.refine_start} and {self.refine_stop}")
        if not (self.reset_every > 0 and self.sh_degree_every > 0 and 0.0 <= self.scale2d_stop <= 1.0):
            raise SplatforgeError("fitted schedule: reset_every and sh_degree_every must be > 0, scale2d_stop in [0, 1]")
        if not (self.refinements >= 1 and 1 <= self.min_refine_every <= self.max_refine_every):
            raise SplatforgeError("fitted schedule: need refinements >= 1 and 1 <= min_refine_every <= max_refine_every")


@dataclass
class StepPlan:
    """What one step does (strategies take it instead of reading their own step numbers)."""

    progress: float  # 0..1 of the run at this step
    sh_degree: int
    means_lr_factor: float  # the means' learning rate over its initial value (gsplat: 0.01 ** progress)
    accumulate: bool  # gather the screen-space statistics refinement reads (inside the refine window)
    refine: bool  # refine after this step (default: grow and prune; mcmc: relocate and grow)
    reset_opacities: bool  # default strategy: clamp opacities after this step
    prune_large: bool  # default strategy: also prune by world size (after the first reset, as gsplat)
    scale2d: bool  # default strategy: screen-size split and prune rules active


class StepTimeModel:
    """Seconds per step as a + b x count, least squares over the recent steps."""

    def __init__(self) -> None:
        self.samples: deque = deque(maxlen=SAMPLES)
        self.a, self.b = 0.0, 0.0

    def add(self, count: int, seconds: float) -> None:
        self.samples.append((float(count), max(float(seconds), 0.0)))

    def fit(self) -> None:
        if not self.samples:
            return
        n = len(self.samples)
        mean_c = sum(c for c, _ in self.samples) / n
        mean_t = sum(t for _, t in self.samples) / n
        var = sum((c - mean_c) ** 2 for c, _ in self.samples)
        b = sum((c - mean_c) * (t - mean_t) for c, t in self.samples) / var if var > 0 else 0.0
        b = max(b, 0.0)  # more Gaussians never make a step faster; noise must not say otherwise
        self.a, self.b = max(mean_t - b * mean_c, 0.0), b
        if self.a == 0.0 and self.b == 0.0:
            self.a = mean_t

    def predict(self, count: int) -> float:
        return self.a + self.b * count


class BudgetSchedule:
    """A schedule fitted to `seconds` of training (see the module docstring)."""

    def __init__(self, seconds: float, fit: FittedSchedule, max_sh_degree: int,
                 clock: Optional[Callable[[], float]] = None) -> None:
        from ..errors import SplatforgeError

        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
            raise SplatforgeError(f"the time budget must be a positive number of seconds, got {seconds!r}")
        fit.check()
        self.seconds, self.fit, self.max_sh_degree = float(seconds), fit, int(max_sh_degree)
        self.clock = clock or time.perf_counter
        self.carried = 0.0  # seconds trained before this process took over (a resumed run)
        self.segment_start: Optional[float] = None
        self.last_done: Optional[float] = None  # clock at the end of this segment's previous step
        self.model = StepTimeModel()
        self.last_refine = 0  # step of the last refinement (0: none yet; statistics gather from step 0)
        self.resets_done = 0
        self.refines_done = 0
        self.estimated_steps: Optional[int] = None

    def elapsed(self) -> float:
        """Seconds of this run so far (earlier segments included); starts the clock on first call."""
        now = self.clock()
        if self.segment_start is None:
            self.segment_start = now
        return self.carried + now - self.segment_start

    def progress(self, count: int) -> float:
        """Progress at the end of the next step, given the scene's Gaussian count."""
        return min(1.0, (self.elapsed() + self.model.predict(count)) / self.seconds)

    def finished(self, count: int) -> bool:
        """True once another step would end more than half a step past the budget."""
        return self.elapsed() + 0.5 * self.model.predict(count) >= self.seconds

    def refine_every(self) -> int:
        fit = self.fit
        if self.estimated_steps is None:
            return fit.max_refine_every
        window = self.estimated_steps * (fit.refine_stop - fit.refine_start)
        return int(min(max(round(window / fit.refinements), fit.min_refine_every), fit.max_refine_every))

    def plan(self, step: int, count: int) -> StepPlan:
        """The plan of step `step` (0-based) of a scene of `count` Gaussians."""
        fit = self.fit
        p = self.progress(count)
        in_window = fit.refine_start < p < fit.refine_stop
        refine = in_window and step - self.last_refine >= self.refine_every()
        if refine:
            self.last_refine = step
            self.refines_done += 1
        next_reset = (self.resets_done + 1) * fit.reset_every
        reset = p >= next_reset and next_reset < fit.refine_stop
        if reset:
            self.resets_done += 1
        return StepPlan(progress=p, sh_degree=min(int(p / fit.sh_degree_every + 1e-9), self.max_sh_degree),
                        means_lr_factor=0.01 ** p, accumulate=p < fit.refine_stop, refine=refine,
                        reset_opacities=reset, prune_large=self.resets_done >= 1, scale2d=p < fit.scale2d_stop)

    def step_done(self, step: int, count: int) -> None:
        """Record the step's time (since the previous step's end; a segment's first step, which
        also compiles kernels, is not timed) against the count it ran with; re-fit now and then."""
        now = self.clock()
        if self.last_done is not None:
            self.model.add(count, now - self.last_done)
        self.last_done = now
        if self.segment_start is None:
            self.segment_start = now
        if step < 3 or (step + 1) % REFIT_EVERY == 0:  # by step number, so a resumed run re-fits where it would have
            self.model.fit()
            remaining = max(self.seconds - (self.carried + now - self.segment_start), 0.0)
            per_step = max(self.model.predict(count), 1e-9)
            self.estimated_steps = step + 1 + int(remaining / per_step)

    def state_dict(self) -> dict:
        return {"elapsed": self.elapsed(), "last_refine": self.last_refine, "resets_done": self.resets_done,
                "refines_done": self.refines_done, "estimated_steps": self.estimated_steps,
                "samples": list(self.model.samples)}

    def load_state_dict(self, state: dict) -> None:
        self.carried = float(state["elapsed"])
        self.segment_start = self.last_done = None
        self.last_refine = int(state["last_refine"])
        self.resets_done = int(state["resets_done"])
        self.refines_done = int(state.get("refines_done", 0))
        self.estimated_steps = state.get("estimated_steps")
        self.model = StepTimeModel()
        for count, seconds in state.get("samples", []):
            self.model.add(count, seconds)
        self.model.fit()
