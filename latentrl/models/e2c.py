"""Embed to Control (Watter et al., 2015): encoder, locally linear transition, decoder.

The model offers the vocabulary the rest of latentrl speaks, batched over the leading dim:
``encode``, ``decode``, ``transition``, ``predict`` for training, the planners' dynamics
protocol ``step`` / ``linearize`` on latent states, and the agents' belief protocol
``initial_belief`` / ``update_belief``. Other model kinds (:mod:`latentrl.kinds`) subclass
:class:`E2C` and change what they must: the parts they hold and how they infer the belief.
"""

from __future__ import annotations

import dataclasses
from numbers import Integral, Real
from typing import Any, Literal

import torch
from torch import Tensor, nn

from latentrl.errors import UserError
from latentrl.field_rules import check_fields, checked
from latentrl.models.decoder import MIN_GAUSSIAN_STD, Decoder
from latentrl.models.encoder import Encoder, Gaussian
from latentrl.models.initialisation import INIT_KINDS, InitKind, initialise
from latentrl.models.transition import LocalLinear, Transition, apply_local_linear

JacobianKind = Literal["exact", "e2c"]


class ModelConfigError(UserError, ValueError):
    """A model configuration that cannot be built."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of an E2C model. Sequences given as lists (e.g. from JSON) become tuples."""

    obs_shape: tuple[int, int, int] = checked(kind=int, low=1, items=True)
    """Observation shape (k, H, W): k stacked grey frames of H x W pixels."""
    action_dim: int = checked(kind=int, low=1)
    """Dimension m of the control u."""
    kind: str = checked("e2c", str)
    """The model kind (:mod:`latentrl.kinds`): e2c, pcc, pc3 or filter."""
    latent_dim: int = checked(3, int, low=1)
    """Dimension n of the latent state z."""
    encoder: Literal["mlp", "conv"] = checked("mlp", str, choices=("mlp", "conv"))
    """Fully connected encoder (small images) or a stride-2 conv stack in front of it."""
    decoder: Literal["mlp", "deconv"] = checked("mlp", str, choices=("mlp", "deconv"))
    """Fully connected decoder or one ending in stride-2 transposed convolutions."""
    likelihood: Literal["bernoulli", "gaussian"] = checked(
        "bernoulli", str, choices=("bernoulli", "gaussian")
    )
    """p(x | z): Bernoulli on pixel intensities in [0, 1] (E2C) or Gaussian with scalar std."""
    gaussian_std: float = checked(0.1, float, above=0)
    """Std of the Gaussian likelihood in pixel units in [0, 1]; the initial value if learned."""
    learn_gaussian_std: bool = checked(False, bool)
    """Learn the Gaussian likelihood's std (one scalar, kept above 1/255)."""
    hidden_sizes: tuple[int, ...] = checked((800, 800), int, low=1, items=True)
    """Fully connected widths of encoder and decoder (E2C pendulum: 2x800 ReLU)."""
    conv_channels: tuple[int, ...] = checked((32, 64, 128, 256), int, low=1, items=True)
    """Channels of the conv encoder / deconv decoder; each layer halves / doubles H and W."""
    batch_norm: bool = checked(False, bool)
    """A BatchNorm1d before every ReLU of the encoder's and the decoder's fully connected
    layers (the PCC and PC3 authors' networks). Training normalises each layer over the batch,
    so a decoder reads small differences between encodings from the start: without it PCC's
    decoder ignores its latent on planar. Evaluation and planning use the running statistics
    (the model in eval mode), so an encoding does not depend on the rest of the batch."""
    init: InitKind = checked("torch", str, choices=INIT_KINDS)
    """Initialisation of the encoder's and decoder's weights: torch's defaults, or ``he``
    (variance-preserving through ReLUs, zero biases; :mod:`latentrl.models.initialisation`),
    which a deep conv encoder / deconv decoder needs to pass image differences through."""
    transition_hidden_sizes: tuple[int, ...] = checked((100, 100), int, low=1, items=True)
    """Widths of the transition network z -> (v, r, B, o)."""
    transition_rank: int = checked(1, int, low=1)
    """k in A = I + V R^T with V, R of shape (n, k): 1 is E2C's I + v r^T; k up to n lets A
    couple k directions at once (a system with k degrees of freedom integrates k velocities)."""
    transition_noise: float = checked(0.0, float, low=0)
    """Std of additive Gaussian noise on the predicted next latent (0: none, as E2C)."""
    logvar_range: tuple[float, float] = checked((-12.0, 6.0), float, items=True)
    """Soft bounds of the encoder's log-variances."""
    max_abs_vr: float = checked(0.95, float, above=0, below=1)
    """Bound on the spectral norm of R^T V (|v^T r| at rank 1), so det A = det(I + R^T V)
    stays in ((1 - bound)^k, (1 + bound)^k)."""
    condition_on_action: bool = checked(False, bool)
    """Feed u to the transition network too (E2C: no, A, B, o depend on z only)."""
    global_transition: bool = checked(False, bool)
    """One (A, B, o) for every z, learned as parameters: E2C's globally linear variant. Exact
    for dynamics that do not depend on where the system is (planar away from obstacles)."""

    def __post_init__(self) -> None:
        for name in ("obs_shape", "hidden_sizes", "conv_channels", "transition_hidden_sizes"):
            value = getattr(self, name)
            if isinstance(value, list | tuple):
                object.__setattr__(self, name, tuple(_as(int, s) for s in value))
        if isinstance(self.logvar_range, list | tuple):
            object.__setattr__(
                self, "logvar_range", tuple(_as(float, s) for s in self.logvar_range)
            )
        check_fields(self, "model", ModelConfigError, "invalid model config: ")
        self._validate()

    def _validate(self) -> None:
        def fail(message: str) -> None:
            raise ModelConfigError(f"invalid model config: {message}")

        if len(self.obs_shape) != 3:
            fail(f"obs_shape must be three positive ints (k, H, W), got {self.obs_shape}")
        if self.encoder == "conv" or self.decoder == "deconv":
            stride = 2 ** len(self.conv_channels)
            _, H, W = self.obs_shape
            if not self.conv_channels:
                fail("conv_channels must not be empty for a conv encoder or deconv decoder")
            if H % stride or W % stride:
                fail(
                    f"image size {H}x{W} is not divisible by {stride} = 2**len(conv_channels);"
                    " use fewer conv_channels, resize the images, or the mlp encoder/decoder"
                )
        if self.transition_rank > self.latent_dim:
            fail(
                f"transition_rank {self.transition_rank} exceeds latent_dim {self.latent_dim}:"
                " A = I + V R^T has rank at most latent_dim"
            )
        if self.global_transition and self.condition_on_action:
            fail("a global transition reads neither z nor u: drop condition_on_action")
        floor = MIN_GAUSSIAN_STD if self.learn_gaussian_std else 0.0
        if not self.gaussian_std > floor:
            fail(f"gaussian_std must be > {floor:.4g}, got {self.gaussian_std}")
        if len(self.logvar_range) != 2 or not self.logvar_range[0] < self.logvar_range[1]:
            fail(f"logvar_range must be (low, high) with low < high, got {self.logvar_range}")


def _as(kind: type, value: Any) -> Any:
    """``value`` as ``kind`` (int or float) when it is a number of that kind (a numpy int,
    an int for a float), else unchanged for the field's check to refuse."""
    number = Integral if kind is int else Real
    if isinstance(value, number) and not isinstance(value, bool):
        return kind(value)
    return value


class E2C(nn.Module):
    """E2C model: q(z|x), locally linear transition, p(x|z); float32, on any device.

    ``jacobian`` is the default for :meth:`linearize`: ``"exact"`` (Jacobian of the mean
    dynamics) or ``"e2c"`` (the network's own A, B).
    """

    def __init__(self, config: ModelConfig, jacobian: JacobianKind = "exact") -> None:
        super().__init__()
        _check_jacobian(jacobian)
        self.config = config
        self.jacobian = jacobian
        c = config
        self.encoder = Encoder(
            c.obs_shape,
            c.latent_dim,
            c.encoder,
            c.hidden_sizes,
            c.conv_channels,
            c.logvar_range,
            c.batch_norm,
        )
        initialise(self.encoder, c.init)
        self.decoder: Decoder | None = None
        """p(x | z); None for a kind without a decoder."""
        if self.has_decoder:
            self.decoder = Decoder(
                c.obs_shape,
                c.latent_dim,
                c.decoder,
                c.hidden_sizes,
                c.conv_channels,
                c.likelihood,
                c.gaussian_std,
                c.learn_gaussian_std,
                c.batch_norm,
            )
            initialise(self.decoder, c.init)
        self.transition_net = Transition(
            c.latent_dim,
            c.action_dim,
            c.transition_hidden_sizes,
            c.max_abs_vr,
            c.condition_on_action,
            c.global_transition,
            c.transition_rank,
        )

    def forward(self, x: Tensor) -> Gaussian:
        """Same as :meth:`encode`."""
        return self.encode(x)

    def encode(self, x: Tensor) -> Gaussian:
        """q(z | x): images uint8 or float in [0, 1], ``(B, k, H, W)`` -> ``(B, n)`` fields."""
        return self.encoder(x)

    has_decoder = True
    """Whether the model holds a decoder p(x | z) (a class attribute of each kind)."""
    filters_history = False
    """Whether the belief reads the history (:meth:`update_belief` uses the previous belief
    and the action), so latents must be read along trajectories, not image by image."""

    def decode(self, z: Tensor) -> Tensor:
        """p(x | z): z ``(B, n)`` -> Bernoulli logits or Gaussian means ``(B, k, H, W)``."""
        if self.decoder is None:
            raise UserError(
                f"a model of kind {self.config.kind!r} has no decoder: it cannot draw images"
            )
        return self.decoder(z)

    def initial_belief(self, x: Tensor) -> Gaussian:
        """The belief over z after the first observation ``(B, k, H, W)``: ``(B, n)`` fields.

        E2C infers z from one observation, so the belief is the encoder's q(z | x)."""
        return self.encode(x)

    def update_belief(self, belief: Gaussian, u: Tensor, x: Tensor) -> Gaussian:
        """The belief after action ``u (B, m)`` and the next observation ``x (B, k, H, W)``,
        from the previous ``belief`` ``(B, n)``. E2C: q(z | x), the history is not used."""
        return self.encode(x)

    def transition(self, z: Tensor, u: Tensor) -> LocalLinear:
        """Local linearisation at z ``(B, n)`` (and u ``(B, m)`` if the net reads it)."""
        return self.transition_net(z, u)

    def predict(self, q_z: Gaussian, z_sample: Tensor, u: Tensor) -> tuple[Tensor, LocalLinear]:
        """Mean ``(B, n)`` of the predicted next latent Q^ and the linearisation behind it.

        The transition is evaluated at ``z_sample`` (a draw from ``q_z``, as in E2C), so
        Q^ = N(A mu + B u + o, A diag(sigma^2) A^T [+ transition_noise^2 I]);
        :func:`latentrl.models.transition_covariance` builds that covariance.
        """
        lin = self.transition(z_sample, u)
        return apply_local_linear(lin, q_z.mean, u), lin

    def step(self, z: Tensor, u: Tensor) -> Tensor:
        """Mean dynamics f(z, u) = A(z) z + B(z) u + o(z): ``(B, n)``, ``(B, m)`` -> ``(B, n)``."""
        return apply_local_linear(self.transition(z, u), z, u)

    def linearize(
        self, z: Tensor, u: Tensor, jacobian: JacobianKind | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(A ``(B, n, n)``, B ``(B, n, m)``, c ``(B, n)``) with f(z', u') ~ A z' + B u' + c.

        ``"exact"``: A = df/dz and B = df/du at (z, u), c = f(z, u) - A z - B u; this keeps
        the d(A(z) z)/dz part that E2C's shortcut drops. ``"e2c"``: the network's own A_t,
        B_t and c = o_t (f is exactly A_t z + B_t u + o_t at the point itself, but its slope
        is not). Defaults to the model's ``jacobian``.
        """
        kind = self.jacobian if jacobian is None else jacobian
        _check_jacobian(kind)
        if kind == "e2c":
            lin = self.transition(z, u)
            return lin.A, lin.B, lin.o

        def f_single(z1: Tensor, u1: Tensor) -> tuple[Tensor, Tensor]:
            out = self.step(z1.unsqueeze(0), u1.unsqueeze(0)).squeeze(0)
            return out, out

        jac = torch.func.jacrev(f_single, argnums=(0, 1), has_aux=True)
        (A, B), f = torch.func.vmap(jac)(z, u)
        c = f - torch.einsum("bij,bj->bi", A, z) - torch.einsum("bij,bj->bi", B, u)
        return A, B, c

    def num_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _check_jacobian(kind: str) -> None:
    if kind not in ("exact", "e2c"):
        raise ValueError(f"jacobian must be 'exact' or 'e2c', got {kind!r}")
