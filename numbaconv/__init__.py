"""numbaconv: convolution, transposed convolution and their gradients,
written in Python and compiled by Numba for CPUs and NVIDIA GPUs.

>>> import numpy as np, numbaconv
>>> volume = np.zeros((1, 1, 8, 8, 8)); volume[0, 0, 4, 4, 4] = 1.0
>>> float(numbaconv.conv3d(volume, np.ones((1, 1, 3, 3, 3)), padding=1).sum())
27.0

Importing the package never touches a GPU; ``numbaconv.cuda_available()``
says whether one is usable (and ``python -m numbaconv info`` why not).
"""

__version__ = "0.1.0"

from . import nn
from .functional import (conv1d, conv2d, conv3d, conv_transpose1d,
                         conv_transpose2d, conv_transpose3d)
from .grad import (conv1d_backward, conv1d_input, conv1d_weight,
                   conv2d_backward, conv2d_input, conv2d_weight,
                   conv3d_backward, conv3d_input, conv3d_weight,
                   conv_transpose1d_backward, conv_transpose2d_backward,
                   conv_transpose3d_backward)


def __getattr__(name):
    # numbaconv.ndimage (the SciPy dialect) is imported on first use.
    if name == "ndimage":
        import importlib
        return importlib.import_module(".ndimage", __name__)
    raise AttributeError(f"module 'numbaconv' has no attribute {name!r}")


def cuda_available() -> bool:
    """Whether an NVIDIA GPU is usable from this process.

    Never raises; the first call probes the driver (numba-cuda must be
    installed: ``pip install "numbaconv[cuda]"``).

    >>> isinstance(cuda_available(), bool)
    True
    """
    from .cuda import cuda_status
    return cuda_status()[0]


__all__ = [
    "cuda_available",
    "nn",
    "ndimage",
    "conv1d", "conv2d", "conv3d",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "conv1d_input", "conv2d_input", "conv3d_input",
    "conv1d_weight", "conv2d_weight", "conv3d_weight",
    "conv1d_backward", "conv2d_backward", "conv3d_backward",
    "conv_transpose1d_backward", "conv_transpose2d_backward",
    "conv_transpose3d_backward",
]
