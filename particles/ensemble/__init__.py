"""Langevin ensembles: many independent members, in chunks, on Dask, streamed to Zarr
(theory.md section 9).

``langevin_ensemble`` runs ``members`` independent copies of the Langevin dynamics of a
``Model`` with the engine ``particles.langevin.simulate_members``.  The members are cut into
chunks of ``chunk_size`` consecutive members; a chunk over all save times is the unit of work
(one task on a Dask cluster, or one call in-process) and of storage (one Zarr chunk along
``member``).

Seeds.  Member ``k``'s noise at step ``s`` is a pure function of ``(seed, k, s)``
(``particles.philox.NOISE_SCHEME``, recorded as ``noise_scheme``) whatever chunk or worker runs
it, so its trajectory depends only on ``(model, sigma0[k], k, times, dt, seed, temperature)``:
the dataset is bitwise the same serially, on any cluster and with any chunking.

Reductions.  Ensemble means and sample variances over members are combined along one fixed
binary tree on the member indices (``tree.py``), so they are bitwise reproducible too.

The modules, one per concern:

- ``runner``: the entry point ``langevin_ensemble`` (validation, lock, seed) and
  ``memory_estimate``;
- ``options``: the grouped options ``Execution``, ``Storage``, ``Output``;
- ``plan``: the ``Plan`` (chunks, tasks, run attributes), the declared store layout and the
  ``Layout`` of a member's state (``PARTICLES``; the matrix ensemble of ``dlnsim.network``
  passes ``network.ensemble.MATRIX`` through ``runner.run_ensemble``);
- ``chunk``: the task ``run_chunk`` (it calls ``layout.block``) and the single call into the
  particle engines (``simulate``);
- ``tree``: the reduction tree;
- ``executors``: in-process, Dask client, address or ``local_cluster()``;
- ``sinks``: the ``Sink`` protocol and the in-memory sink; ``zarr_sink``: the Zarr store
  (checksums, resume) on top of ``particles/store.py``.
"""

from .executors import (
    CLUSTER_TIMEOUT,
    available_cores,
    cluster_options,
    local_cluster,
    local_cluster_options,
)
from .options import Execution, Output, Storage
from .plan import (
    BIT_GENERATOR,
    CHUNK_BYTES,
    CHUNK_PAIR_WORK,
    REDUCTIONS,
    SEEDING_SCHEME,
    STORE_FORMAT,
)
from .runner import langevin_ensemble, memory_estimate

__all__ = [
    "BIT_GENERATOR",
    "CHUNK_BYTES",
    "CHUNK_PAIR_WORK",
    "CLUSTER_TIMEOUT",
    "REDUCTIONS",
    "SEEDING_SCHEME",
    "STORE_FORMAT",
    "Execution",
    "Output",
    "Storage",
    "langevin_ensemble",
    "local_cluster",
    "local_cluster_options",
    "cluster_options",
    "available_cores",
    "memory_estimate",
]
