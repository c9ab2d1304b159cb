"""Injected failures of the inference thread, for alert tests and chaos drills
(`/admin/fault`, with `FAULT_INJECTION` on)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Fault:
    """Injected failure for alert tests and chaos drills: `error` raises, `slow` stalls;
    `model` limits it to one served model (e.g. the staging candidate), empty: all of them."""

    mode: str = "off"
    seconds: float = 0.0
    until: float = 0.0
    model: str = ""

    def current(self, model: str | None = None) -> str:
        if self.mode != "off" and self.until and time.time() > self.until:
            self.mode, self.seconds, self.until, self.model = "off", 0.0, 0.0, ""
        if model is not None and self.model and model != self.model:
            return "off"
        return self.mode
