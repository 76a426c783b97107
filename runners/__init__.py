"""Compute side of dimple-stats (torch): datasets, models, geometry, attacks, executors."""

import warnings

# torch.func's first forward-mode call registers decompositions with torch.jit.script, which
# torch 2.10+ deprecates with a FutureWarning in every process (each worker too). It is
# torch's own internal use, nothing a user can act on, so it is silenced here for that
# message from torch only; every other warning still shows.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                        category=FutureWarning, module=r"torch\.")
