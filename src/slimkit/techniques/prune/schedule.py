"""The gradual pruning schedule of Zhu & Gupta 2017.

Zhu and Gupta, "To prune, or not to prune: exploring the efficacy of pruning for model
compression" (ICLR workshop 2018, arXiv:1710.01878), raise the sparsity from an initial value
``s_i`` to the final ``s_f`` over ``n`` pruning updates spaced ``Δt`` training steps apart from step
``t0``:

    s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (n · Δt))^3      for t in {t0, t0 + Δt, ..., t0 + nΔt}

The masks change only at those steps, so between two updates the sparsity holds its last value;
before ``t0`` nothing is pruned and after ``t0 + nΔt`` the sparsity stays at ``s_f``. Pruning fast
at first, while the network has many redundant weights, and slowly near the end gives it time to
recover.

Example:
    >>> schedule = GradualSchedule(begin_step=100, frequency=10, n_updates=4)
    >>> schedule.sparsity_at(110, final=0.9)
    0.5203125
"""

from __future__ import annotations

from dataclasses import dataclass

from slimkit.errors import ConfigError, check_fraction


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}; got {value!r}")


@dataclass(frozen=True)
class GradualSchedule:
    """When and how fast to raise the sparsity (Zhu & Gupta 2017).

    Args:
        initial_sparsity: ``s_i``, the sparsity of the first update at ``begin_step``.
        begin_step: ``t0``, the optimizer step of the first update (0: before the first step).
        frequency: ``Δt``, optimizer steps between two updates.
        n_updates: ``n``, the updates after the first; the last one, at
            ``begin_step + n_updates · frequency``, reaches the final sparsity.
    """

    initial_sparsity: float = 0.0
    begin_step: int = 0
    frequency: int = 100
    n_updates: int = 10

    def __post_init__(self) -> None:
        check_fraction("schedule.initial_sparsity", self.initial_sparsity, high_open=True)
        _check_int("schedule.begin_step", self.begin_step, 0)
        _check_int("schedule.frequency", self.frequency, 1)
        _check_int("schedule.n_updates", self.n_updates, 1)

    @property
    def end_step(self) -> int:
        """The step of the last update, ``t0 + n · Δt``."""
        return self.begin_step + self.n_updates * self.frequency

    def is_update_step(self, step: int) -> bool:
        """Whether the masks change after optimizer step ``step``."""
        offset = step - self.begin_step
        return 0 <= offset <= self.n_updates * self.frequency and offset % self.frequency == 0

    def sparsity_at(self, step: int, final: float) -> float:
        """``s_t`` after ``step`` optimizer steps, for a final sparsity ``final`` (``s_f``).

        The value of the last update at or before ``step`` (0 before ``t0``, ``s_f`` after the end).
        """
        if step < self.begin_step:
            return 0.0
        if step >= self.end_step:
            return final
        done = (step - self.begin_step) // self.frequency * self.frequency  # last update step
        progress = done / (self.n_updates * self.frequency)
        return final + (self.initial_sparsity - final) * (1.0 - progress) ** 3
