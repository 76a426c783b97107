"""The per-sample measurement: one row per attacked sample, every column of ``shared/CLAIMS.md``.

For correctly classified evaluation images ``x`` (labels ``y``), a classifier and an autoencoder
``(E, D)``, :func:`measure` computes

========================  ==================================================================
column                    meaning
========================  ==================================================================
sample, label             the caller's sample id (default: position) and the true label
n, k                      input dimension; tangent dimension (numerical rank of ``J``; the
                          latent dimension on the matrix-free path, where ``J`` is never formed)
recon_err                 ``||x - D(E(x))||_2``
norm_*, success_*, eps_*  minimal adversarial L2 (or Linf) norm, success, budget, for the
                          unrestricted (plain), on-manifold (on) and off-manifold (off) attack;
                          a failure keeps its row with ``success = False`` and ``norm = eps``
r_T                       ``||P_T d|| / ||d||`` for the plain perturbation ``d``, T the tangent
                          space at ``z = E(x)`` (the basis fixed at ``D(E(x))``, as in the
                          reproduction)
r_R                       the same for a fresh seeded uniformly random subspace of dimension k
r_Tother                  the same for the tangent space at ANOTHER measured image of the same
                          class (NaN when the class has a single measured sample)
r_T_grad                  ``||P_T g|| / ||g||``, ``g`` the input gradient of the margin at ``x``
iso_cond                  ``cond(J^T J)`` at ``E(x)``: exact (dense) or a Lanczos lower bound
                          (matrix-free)
========================  ==================================================================

``r_*`` of a censored (failed) attack are computed on its last iterate: the row stays, and the
analysis decides from ``success_plain`` whether to use them. Results are deterministic for a
given ``torch.Generator`` state, configs and inputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from dimple_stats.protocol.schema import AttackConfig, TangentConfig
from runners.attacks.losses import input_gradient
from runners.attacks.pgd import AttackResult, Bounds, attack_from_config
from runners.geometry.controls import other_same_class, random_subspace, random_subspace_ratio
from runners.geometry.spaces import (
    DenseSubspace,
    MatrixFreeTangent,
    decoder_in_dtype,
    tangent_space,
)

if TYPE_CHECKING:
    import pandas as pd

    from runners.models.autoencoders import Autoencoder

__all__ = ["COLUMNS", "MODES", "Measurement", "correctly_classified", "measure"]

MODES = ("plain", "on", "off")

#: Column order of :meth:`Measurement.to_frame`.
COLUMNS: tuple[str, ...] = (
    "sample", "label", "n", "k", "recon_err",
    "norm_plain", "success_plain", "eps_plain",
    "norm_on", "success_on", "eps_on",
    "norm_off", "success_off", "eps_off",
    "r_T", "r_R", "r_Tother", "r_T_grad", "iso_cond",
)

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True, eq=False)
class Measurement:
    """Per-sample measurements of one (classifier, autoencoder, seed).

    Attributes
    ----------
    columns : dict of str to numpy.ndarray
        Exactly :data:`COLUMNS`, each of length N: ``sample``, ``label``, ``n``, ``k`` int64;
        ``success_*`` bool; the rest float64.
    delta : dict of str to Tensor
        The perturbations of each mode (``"plain"``, ``"on"``, ``"off"``), ``(N, C, H, W)``.
    diagnostics : dict of str to numpy.ndarray
        Not part of the table: ``steps_<mode>`` (gradient steps per sample), ``other_index``
        (position of the image whose tangent gave ``r_Tother``, -1 if none), and on the
        matrix-free path ``solver_iterations`` (mean CG/LSQR iterations per projection).
    method : str
        ``"dense"`` or ``"matrix_free"``.
    """

    columns: dict[str, np.ndarray]
    delta: dict[str, Tensor]
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)
    method: str = "dense"

    def __len__(self) -> int:
        return len(self.columns["sample"])

    def to_frame(self) -> "pd.DataFrame":
        """The table: one row per sample, columns :data:`COLUMNS` in that order."""
        import pandas as pd

        return pd.DataFrame({name: self.columns[name] for name in COLUMNS})


@contextlib.contextmanager
def _eval_mode(*modules: nn.Module) -> Iterator[None]:
    # Dropout or batch statistics would make the attacked function random; restore the caller's
    # modes afterwards rather than silently changing them.
    was = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, was):
            m.train(mode)


def correctly_classified(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 256
                         ) -> Tensor:
    """``(N,)`` bool: ``model`` (in eval mode) predicts ``y``; select the samples to measure."""
    with _eval_mode(model), torch.no_grad():
        preds = torch.cat([model(xb).argmax(dim=1) for xb in torch.split(x, batch_size)])
    return preds == y


def _measure_chunk(
    classifier: nn.Module,
    autoencoder: "Autoencoder",
    x: Tensor,
    y: Tensor,
    x_other: Tensor,
    has_other: Tensor,
    *,
    attack: AttackConfig,
    tangent: TangentConfig,
    generator: torch.Generator,
    bounds: Bounds,
) -> tuple[dict[str, Tensor], dict[str, Tensor], str, float | None]:
    dtype = _DTYPES[tangent.dtype]
    decode = decoder_in_dtype(autoencoder, dtype)
    with torch.no_grad():
        z = autoencoder.encode(x)
        recon_err = (x - autoencoder.decode(z)).flatten(1).norm(dim=1).to(torch.float64)
    n = x[0].numel()
    space = tangent_space(decode, z, config=tangent, n=n)
    cols: dict[str, Tensor] = {"n": torch.full((len(x),), n, dtype=torch.int64),
                               "k": space.dims.to(torch.int64), "recon_err": recon_err}
    deltas: dict[str, Tensor] = {}
    projections = {"plain": None, "on": space.on_manifold(), "off": space.off_manifold()}
    for mode in MODES:
        res: AttackResult = attack_from_config(attack, mode, bounds=bounds)(
            classifier, x, y, project_gradient=projections[mode], generator=generator)
        eps = torch.full((len(x),), res.eps, dtype=torch.float64)
        success = res.success.cpu()
        # Censored rows carry eps exactly (the float64 budget, not its float32 rounding).
        cols[f"norm_{mode}"] = torch.where(success, res.norm.cpu().to(torch.float64), eps)
        cols[f"success_{mode}"] = success
        cols[f"eps_{mode}"] = eps
        cols[f"steps_{mode}"] = res.steps
        deltas[mode] = res.delta
    plain = deltas["plain"]
    cols["r_T"] = space.ratio(plain).to(torch.float64)
    if isinstance(space, DenseSubspace):
        control = random_subspace(n, space.dims, generator=generator, dtype=dtype,
                                  device=x.device)
        cols["r_R"] = control.ratio(plain).to(torch.float64)
    else:
        # n * k too large for an explicit random basis: an exact draw of the same law, O(n).
        cols["r_R"] = random_subspace_ratio(n, space.dims, generator=generator)
    has_other = has_other.cpu()
    full = torch.full((len(x),), float("nan"), dtype=torch.float64)
    if bool(has_other.any()):
        rows = has_other.nonzero().squeeze(1)
        with torch.no_grad():
            z_other = autoencoder.encode(x_other[rows])
        other = tangent_space(decode, z_other, config=tangent, n=n)
        full[rows] = other.ratio(plain[rows]).cpu().to(torch.float64)
    cols["r_Tother"] = full
    grad = input_gradient(classifier, x, y, loss="margin")
    cols["r_T_grad"] = space.ratio(grad).to(torch.float64)
    cols["iso_cond"] = space.gram_condition(generator=generator).to(torch.float64)
    iters = None
    if isinstance(space, MatrixFreeTangent) and space.history:
        iters = float(torch.cat([h.iterations for h in space.history]).double().mean())
    method = "dense" if isinstance(space, DenseSubspace) else "matrix_free"
    # The table is assembled on the CPU whatever device the models ran on.
    cols = {name: t.detach().cpu() for name, t in cols.items()}
    deltas = {name: t.detach().cpu() for name, t in deltas.items()}
    return cols, deltas, method, iters


def measure(
    classifier: nn.Module,
    autoencoder: "Autoencoder",
    x: Tensor,
    y: Tensor,
    *,
    attack: AttackConfig | None = None,
    tangent: TangentConfig | None = None,
    generator: torch.Generator,
    bounds: Bounds = (0.0, 1.0),
    sample_ids: Sequence[int] | np.ndarray | Tensor | None = None,
) -> Measurement:
    """Measure every per-sample quantity of the claim catalogue for a set of samples.

    Parameters
    ----------
    classifier : nn.Module
        Images to logits. Run in eval mode (restored afterwards); parameters are not updated.
    autoencoder : Autoencoder
        ``encode``/``decode`` define the manifold (an ``OracleAutoencoder`` for the true one).
    x, y : Tensor
        ``(N, C, H, W)`` float images, CORRECTLY CLASSIFIED by ``classifier`` (see
        :func:`correctly_classified`), and their ``(N,)`` labels.
    attack : AttackConfig or None
        eps, step and steps per mode, loss, refinement; ``batch_size`` samples are processed
        together. Default ``AttackConfig()``.
    tangent : TangentConfig or None
        Dense or matrix-free tangent spaces, dtype, rank tolerance, solver. Default
        ``TangentConfig()``.
    generator : torch.Generator
        The source of every random choice (other image, random subspaces, random starts,
        Lanczos start vectors): same state, same results.
    bounds : (lo, hi) or None
        Pixel box the attacks stay in (the dataset's ``pixel_range``).
    sample_ids : sequence of int or None
        Values of the ``sample`` column (e.g. indices into the eval split); default ``0..N-1``.

    Returns
    -------
    Measurement
        ``.to_frame()`` is the table (columns :data:`COLUMNS`).

    Raises
    ------
    ValueError
        When some sample is misclassified to begin with (its "minimal perturbation" is 0 and
        would bias every norm statistic), or shapes disagree.
    """
    attack = attack or AttackConfig()
    tangent = tangent or TangentConfig()
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    ok = correctly_classified(classifier, x, y, batch_size=attack.batch_size)
    if not bool(ok.all()):
        bad = (~ok).nonzero().squeeze(1).tolist()
        raise ValueError(
            f"measure expects correctly classified samples; {len(bad)} are not "
            f"(positions {bad[:10]}{'...' if len(bad) > 10 else ''}); select them with "
            "correctly_classified() first"
        )
    ids = (np.arange(len(x)) if sample_ids is None
           else np.asarray(torch.as_tensor(sample_ids), dtype=np.int64))
    other = other_same_class(y, generator=generator)
    chunks: list[dict[str, Tensor]] = []
    deltas: list[dict[str, Tensor]] = []
    method, iters = "dense", []
    with _eval_mode(classifier, autoencoder):
        for start in range(0, len(x), attack.batch_size):
            sl = slice(start, start + attack.batch_size)
            has = other[sl] >= 0
            cols, dl, method, it = _measure_chunk(
                classifier, autoencoder, x[sl], y[sl], x[other[sl].clamp(min=0)], has,
                attack=attack, tangent=tangent, generator=generator, bounds=bounds)
            chunks.append(cols)
            deltas.append(dl)
            if it is not None:
                iters.append(it)
    cat = {name: torch.cat([c[name] for c in chunks]) for name in chunks[0]}
    columns = {"sample": ids, "label": y.cpu().numpy().astype(np.int64)}
    columns.update({name: cat[name].numpy() for name in COLUMNS if name in cat})
    diagnostics = {f"steps_{m}": cat[f"steps_{m}"].numpy() for m in MODES}
    diagnostics["other_index"] = other.numpy()
    if iters:
        diagnostics["solver_iterations"] = np.asarray(iters)
    return Measurement(columns=columns,
                       delta={m: torch.cat([d[m] for d in deltas]) for m in MODES},
                       diagnostics=diagnostics, method=method)
