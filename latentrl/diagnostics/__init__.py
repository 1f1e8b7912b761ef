"""What the lecture notes on latent variable models claim, measured on a trained model.

Pure functions, one question per module, each on any model given as a log-likelihood
``z (S, B, n) -> (S, B)`` and a Gaussian q(z | x) (:mod:`latentrl.diagnostics.latent_model`):

- :mod:`~latentrl.diagnostics.elbo_gap`: log p(x) by importance sampling, the IWAE bound as the
  number of samples grows, the ELBO and the gap KL(q(z|x) || p(z|x)) between them;
- :mod:`~latentrl.diagnostics.amortization`: per-image variational parameters fitted by
  gradient ascent on the ELBO, splitting the gap into approximation and amortization;
- :mod:`~latentrl.diagnostics.gradient_variance`: the reparameterised and the score-function
  gradient estimators and the trace of their covariance;
- :mod:`~latentrl.diagnostics.transition_check`: the transition's KL in closed form against
  Monte Carlo, and the one-step linearization rolled over a growing horizon;
- :mod:`~latentrl.diagnostics.goal_check`: in the env, whether the planner can hold the goal
  in the model, and whether a push near the goal moves the latent as the frames show.

:mod:`latentrl.diagnose` runs them on a run directory (``latentrl diagnose RUN``).
"""
