"""Where models registered before the package was grouped by stage find :class:`ParalingModel`.

A registered model is code (MLflow "models from code"): its entry script imports ``ParalingModel`` by module path,
and the entry scripts written by earlier releases name this module (or :mod:`paraling.tracking.registry`). New models
name :mod:`paraling.serving.pyfunc`; this alias keeps the old ones loading.
"""

from paraling.serving.pyfunc import ParalingModel

__all__ = ["ParalingModel"]
