"""Scale-out on Ray: ``edgevit matrix`` (conversion x evaluation matrices, one Ray task per cell) and ``edgevit
evaluate`` (a large labelled image folder sharded over Ray workers). Local by default, a cluster with an address.

Ray is an optional dependency (``pip install 'edgevit[scale]'``); nothing here imports it before it is needed.
"""

from edgevit.scale.evaluate import evaluate
from edgevit.scale.matrix import run_matrix
from edgevit.scale.spec import MatrixSpec, load_spec

__all__ = ["MatrixSpec", "evaluate", "load_spec", "run_matrix"]
