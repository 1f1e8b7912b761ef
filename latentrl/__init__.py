"""latentrl: model-based RL with learned locally linear latent dynamics (E2C and successors).

Importing the package registers its environments with Gymnasium under the ``latentrl/``
namespace (cheap: entry points are strings, nothing heavy is imported).
"""

from latentrl import envs as envs  # registers the environments

__version__ = "0.4.0"
