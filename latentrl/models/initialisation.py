"""Weight initialisation of the encoder and decoder stacks (``model.init``).

``"torch"`` keeps PyTorch's default, kaiming-uniform with ``a = sqrt(5)``: weights of variance
``1 / (3 fan_in)``. Behind a ReLU, which halves the second moment, each such layer scales the
second moment of its input by about 1/6, so the differences between images shrink by about
2.4x per layer: a net of L layers passes them on scaled by about ``6^(-L/2)``. ``"he"`` draws
weights from ``N(0, 2 / fan_in)`` (He et al., 2015) and zeroes the biases, which keeps the
second moment through every ReLU layer; the last layer, with no ReLU after it, gets
``N(0, 1 / fan_in)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from torch import nn

InitKind = Literal["torch", "he"]
INIT_KINDS: tuple[str, ...] = ("torch", "he")

_WEIGHTED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


def fan_in(layer: nn.Module) -> int:
    """Inputs that reach one output unit of ``layer`` (a Linear, Conv2d or ConvTranspose2d).

    A transposed convolution of stride s spreads each input over ``k / s`` outputs per axis,
    so an output gathers ``in_channels * (k / s)^2`` inputs, not PyTorch's ``out_channels *
    k^2`` (which counts the other direction).
    """
    if isinstance(layer, nn.Linear):
        return layer.in_features
    if isinstance(layer, nn.ConvTranspose2d):
        (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
        return layer.in_channels * max(kh // sh, 1) * max(kw // sw, 1)
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        return layer.in_channels // layer.groups * kh * kw
    raise TypeError(f"no fan-in for {type(layer).__name__}")


def weighted_layers(net: nn.Module) -> list[nn.Module]:
    """The Linear, Conv2d and ConvTranspose2d layers of ``net`` in the order it applies them
    (module registration order, which is the order of its Sequential stacks)."""
    return [m for m in net.modules() if isinstance(m, _WEIGHTED)]


def he_init(layers: Sequence[nn.Module]) -> None:
    """Re-initialise ``layers`` in place: every layer but the last ``N(0, 2 / fan_in)``, the
    last (no ReLU after it) ``N(0, 1 / fan_in)``; biases zero. Draws from torch's global RNG."""
    for i, layer in enumerate(layers):
        gain = 1.0 if i == len(layers) - 1 else 2.0
        nn.init.normal_(layer.weight, 0.0, math.sqrt(gain / fan_in(layer)))
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def initialise(net: nn.Module, kind: InitKind) -> None:
    """Apply ``model.init`` to a ReLU stack ``net`` (an encoder or a decoder): ``"torch"``
    leaves it as built, ``"he"`` re-draws it with :func:`he_init`."""
    if kind == "he":
        he_init(weighted_layers(net))
    elif kind != "torch":
        raise ValueError(f"init must be one of {INIT_KINDS}, got {kind!r}")
