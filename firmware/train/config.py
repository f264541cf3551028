"""The trainer's configuration (:class:`TrainConfig`); the rules: :mod:`spikefab.firmware.train`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...sim.encoding import check_encoder


__all__ = ["TrainConfig"]


# ---- configuration ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (with the data and the NumPy build).

    Parameters
    ----------
    hidden : int or tuple of int
        Hidden neurons: one hidden layer of that many, or one layer per entry (layers wider
        than a core are spread over cores by the mapper).
    recurrent : bool
        Every hidden layer also takes its own spikes of the tick before, all to all
        (recurrent weights, trained with the rest).
    steps : int
        ``T``, ticks of input per image.
    w_bits : {8, 4}
        Signed weight width of the exported model.
    v_bits : int
        Signed membrane width, 8 .. 24 (16 on the chip).
    leak : int
        Leak shift ``k`` of every layer, 0 (no leak) .. ``v_bits - 1``.
    epochs : int
        Epochs in all, float and quantization-aware.
    qat_epochs : int or None
        The last ``qat_epochs`` epochs are quantization-aware (default: a third, at least 1).
        ``0`` only rounds the float network at the end; ``epochs`` trains the integer network
        from the start.
    batch_size : int
    lr, qat_lr : float
        Adam learning rates at the start of each phase; each phase follows a cosine schedule
        down to ``lr_floor`` times its start.
    weight_decay : float
        Decoupled (AdamW) weight decay on the weights.
    shift : int
        Augmentation: random shifts of up to ``shift`` pixels along each axis (0: off). Only
        applies to square images.
    slope : float
        ``beta`` of the fast-sigmoid surrogate.
    logit_scale : float
        Logits are ``logit_scale / T`` times each output neuron's charge.
    init_gain : float
        Initial weights are uniform with ``gain * sqrt(3 / inputs)`` as bound.
    seed : int
        Seeds everything (weights, batches, shifts, training spike trains).
    eval_seed : int
        The encoder seed of the validation runs.
    encoder : str
        The rate encoder of training and validation (``sim.encoding.ENCODERS``), recorded in
        the exported model: ``"xorshift32"`` for the chip's own.
    """
    hidden: int | tuple[int, ...] = 128
    recurrent: bool = False
    steps: int = 25
    w_bits: int = 8
    v_bits: int = 16
    leak: int = 2
    epochs: int = 30
    qat_epochs: int | None = None
    batch_size: int = 128
    lr: float = 2e-3
    qat_lr: float = 3e-4
    lr_floor: float = 0.02
    weight_decay: float = 0.0
    shift: int = 1
    slope: float = 5.0
    logit_scale: float = 8.0
    init_gain: float = 1.0
    seed: int = 0
    eval_seed: int = 0
    encoder: str = "pcg64"

    def validate(self) -> TrainConfig:
        """Check every field; raises ValueError naming the field."""
        def integer(name, lo, hi=None):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, not {value!r}")
            if value < lo or (hi is not None and value > hi):
                bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise ValueError(f"{name} must be {bound}, not {value!r}")

        if isinstance(self.w_bits, bool) or self.w_bits not in (4, 8):
            raise ValueError(f"w_bits must be 4 or 8, not {self.w_bits!r}")
        integer("steps", 1)
        hidden = self.hidden if isinstance(self.hidden, tuple) else (self.hidden,)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, (int, np.integer))
                             or h < 1 for h in hidden):
            raise ValueError(f"hidden must be a positive integer or a tuple of them, not "
                             f"{self.hidden!r}")
        if not isinstance(self.recurrent, bool):
            raise ValueError(f"recurrent must be True or False, not {self.recurrent!r}")
        integer("v_bits", 8, 24)
        integer("leak", 0, self.v_bits - 1)
        integer("epochs", 1)
        if self.qat_epochs is not None:
            integer("qat_epochs", 0, self.epochs)
        integer("batch_size", 1)
        integer("shift", 0, 8)
        integer("seed", 0)
        integer("eval_seed", 0)
        check_encoder(self.encoder)
        for name in ("lr", "qat_lr", "slope", "logit_scale", "init_gain"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        for name in ("lr_floor", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, not {value!r}")
        return self

    @property
    def hidden_layers(self) -> tuple[int, ...]:
        """The hidden layers' sizes, in order."""
        return self.hidden if isinstance(self.hidden, tuple) else (self.hidden,)

    @property
    def qat(self) -> int:
        """The number of quantization-aware epochs."""
        if self.qat_epochs is not None:
            return self.qat_epochs
        return max(1, self.epochs // 3)
