"""paraling: paralinguistic audio classification with windowed CNNs on log-mel features.

The public surface is small: :func:`paraling.pipeline.experiment.run_experiment` runs one cross-validated experiment
from a composed configuration; the CLI (``paraling train|sweep|ensemble|predict|data|report|bench|cache``) wraps it.
"""

from paraling.errors import ParalingError

__version__ = "0.1.0"
__all__ = ["ParalingError", "__version__"]
