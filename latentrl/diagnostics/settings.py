"""``latentrl diagnose``'s settings: how many images, draws, steps and repeats."""

from __future__ import annotations

from dataclasses import dataclass

from latentrl.field_rules import check_fields, checked


@dataclass(frozen=True)
class DiagnoseSettings:
    """What :func:`latentrl.diagnose.diagnose_run` measures on, and how hard it tries."""

    images: int = checked(32, int, low=1)
    """Validation images for the ELBO gap and the amortization gap."""
    samples: int = checked(5000, int, low=1)
    """K: importance samples per image for log p(x) (the IWAE curve runs k = 1 .. K)."""
    chunk: int = checked(1024, int, low=1)
    """Latents decoded per pass (draws x images): bounds the decoder's memory (small enough
    that the allocator reuses its buffers instead of mapping fresh pages each pass)."""
    fit_steps: int = checked(300, int, low=1)
    """Adam steps of the per-image variational parameters."""
    fit_samples: int = checked(8, int, low=1)
    """Draws per image and step of that ascent."""
    fit_learning_rate: float = checked(0.05, float, above=0)
    """Adam's step size for the per-image (mu, log sigma^2)."""
    gradient_images: int = checked(12, int, low=2)
    """Images whose gradient estimators are compared (one variance per image)."""
    repeats: int = checked(32, int, low=2)
    """Independent gradient estimates per image and estimator, for their variance."""
    draws: int = checked(1, int, low=1)
    """M: draws per gradient estimate, the same for every estimator."""
    transitions: int = checked(256, int, low=1)
    """Validation transitions (windows) for the transition KL and the linearization."""
    kl_samples: int = checked(4000, int, low=2)
    """Draws for the Monte Carlo estimate of the transition KL."""
    horizon: int = checked(10, int, low=1)
    """Longest rollout of the linearization (capped by the dataset's chains)."""
    goal_states: int = checked(64, int, low=2)
    """True states near the goal from which the push check starts."""
    goal_steps: int = checked(5, int, low=1)
    """Steps of each push in the push check."""
    seed: int = checked(0, int, low=0)
    """Seed of every draw (images, noise)."""

    def __post_init__(self) -> None:
        check_fields(self, "diagnose")
