"""The path every public call takes: place -> validate -> compute -> wrap.

``functional`` and ``grad`` describe *what* each operation computes in terms
of the primitives (``_ops``); this module owns the mechanics they share:
choosing the device, converting and checking operands, honouring ``out=``,
reshaping to the lifted 5-D views and giving back the caller's kind of array.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np

from ._dispatch import Placement, place

#: Operands a call may leave out (None); every other one must be an array.
OPTIONAL = ("bias",)


class Call:
    """One public call in progress.

    >>> call = Call(None, input=np.ones((1, 1, 4)), weight=np.ones((1, 1, 3)))
    >>> call.shape("input"), call.dtype
    ((1, 1, 4), dtype('float64'))
    """

    def __init__(self, device: Optional[str], **operands: Any):
        for name, value in operands.items():
            if value is None and name not in OPTIONAL:
                raise TypeError(f"{name} must be an array (a NumPy array, a GPU "
                                f"array or a tensor), got None")
        self.placement: Placement = place(device, **operands)
        self.backend = self.placement.backend
        self.raw = operands
        names = [n for n, v in operands.items() if v is not None]
        self.dtype = None
        self.arrays = {}
        self._contiguous = {}
        with self.placement.context():
            for name in names:
                arr = self.placement.operand(operands[name], name, self.dtype,
                                             names[0])
                if self.dtype is None:
                    self.dtype = np.dtype(arr.dtype)
                self.arrays[name] = arr

    def shape(self, name: str) -> Optional[tuple]:
        arr = self.arrays.get(name)
        return None if arr is None else tuple(arr.shape)

    def view5(self, name: str, shape5: tuple):
        """A contiguous 5-D view of operand ``name`` for the kernels.

        A strided operand is packed once per call, however many of the call's
        results read it (``conv*d_backward`` reads ``grad_output`` three times).
        """
        if name not in self._contiguous:
            self._contiguous[name] = self.placement.contiguous(self.arrays[name])
        return self._contiguous[name].reshape(shape5)

    def result(self, shape: tuple, shape5: tuple,
               compute: Callable[[Any], None], out: Any = None):
        """Allocate (or check ``out``), run ``compute(view5)``, return the result.

        Nothing is computed when the result is empty.  A non-contiguous ``out``
        is filled from a contiguous temporary.  On the GPU everything runs
        with the operands' device current.
        """
        with self.placement.context():
            target = self.placement.output(out, shape, self.dtype,
                                           tuple(self.raw.items()))
            work = target
            if out is not None and not self.placement.is_contiguous(target):
                work = self.backend.empty(shape, self.dtype)
            if math.prod(shape) > 0:
                compute(work.reshape(shape5))
            if work is not target:
                self.placement.copy_into(target, work)
            if out is not None:
                return self.placement.wrap_out(out, target)
            return self.placement.wrap(target)
