"""The per-sample measurement: one row per attacked sample, every column of the measurements table.

For correctly classified evaluation images ``x`` (labels ``y``), a classifier and an autoencoder
``(E, D)``, :func:`measure` computes

========================  ==================================================================
column                    meaning
========================  ==================================================================
sample, label             the caller's sample id (default: position) and the true label
image_id                  the image's index in its dataset split (default: ``sample``): the same
                          image measured under several seeds has the same id
n, k                      input dimension; tangent dimension (numerical rank of ``J``; the
                          latent dimension on the matrix-free path, where ``J`` is never formed)
recon_err                 ``||x - D(E(x))||_2``
base_err                  ``||x - D(z)||_2`` at the tangent base point ``z`` (``= recon_err``
                          for ``tangent.at: encoder``; for ``nearest`` ``z`` minimises it)
base_converged            the base point search converged (always True for ``encoder``)
base_ok                   the classifier classifies the attacks' base point correctly: always
                          True under ``attack.base: image``; under ``manifold`` (attacks from
                          ``x_m = D(z*)``) a False row is EXCLUDED from every claim (its norms
                          are NaN: the minimal perturbation from a misclassified point is 0)
norm_*, success_*, eps_*  minimal adversarial L2 (or Linf) norm, success, budget, for the
                          unrestricted (plain), on-manifold (on) and off-manifold (off) attack;
                          a failure keeps its row with ``success = False`` and ``norm = eps``
in_T_on, in_T_off         ``||P_T d|| / ||d||`` of the on- and off-manifold perturbations: what
                          their names claim is checked on every run (1 and 0 under
                          ``attack.box: strict``; ``clip`` leaves T where pixels sit at a bound)
measurable_on             the on-manifold norm exists: False only for the strict tangent-plane
                          attack where ``(x + T) ∩ box`` is ``{x}`` or reaches less than
                          :data:`MIN_REACH_SHARE` of eps (then ``norm_on`` is NaN, never
                          imputed at eps, and the norm claims leave the row out and count it)
reach_on                  a certified lower bound on how far ``(x + T) ∩ box ∩ ball`` reaches
                          (strict tangent attack only; NaN otherwise)
path_on                   the latent attack's path length along the decoded curve (NaN for the
                          tangent attack and for failures)
r_T                       ``||P_T d|| / ||d||`` for the plain perturbation ``d``, T the tangent
                          space at the base point (``tangent.at``; ``E(x)`` by default, as in
                          the reproduction)
r_R                       the same for a fresh seeded uniformly random subspace of dimension k
r_Tother                  the same for the tangent space at ANOTHER measured image of the same
                          class (NaN when the class has a single measured sample)
r_PCA                     the same for the top-k principal subspace of the training images
                          (NaN when no data controls were given)
r_Rdata                   the same for a fresh random k-subspace drawn with the training-data
                          covariance (NaN when no data controls were given)
r_T_grad                  ``||P_T g|| / ||g||``, ``g`` the input gradient of the margin at ``x``
r_T_grad_other            ``g``'s share in the other image's tangent space (the control of
                          ``r_T_grad``, as ``r_Tother`` is of ``r_T``)
iso_cond                  ``cond(J^T J)`` at the base point: exact (dense) or a Lanczos lower
                          bound (matrix-free)
========================  ==================================================================

``r_*`` of a censored (failed) attack are computed on its last iterate: the row stays, and the
analysis decides from ``success_plain`` whether to use them. Results are deterministic for a
given ``torch.Generator`` state, configs and inputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from dimple_stats.errors import RunFailure
from dimple_stats.measurements import SCHEMAS
from dimple_stats.protocol.schema import MODES, AttackConfig, TangentConfig
from runners.attacks.base import AttackResult, Bounds
from runners.attacks.factory import attack_from_config
from runners.attacks.latent import latent_attack, pullback_metric
from runners.attacks.losses import input_gradient
from runners.attacks.tangent_strict import strict_tangent_attack
from runners.geometry.controls import (
    DataSubspaces,
    other_same_class,
    random_subspace,
    random_subspace_ratio,
)
from runners.geometry.feasible_cone import tangent_reach
from runners.geometry.spaces import (
    TANGENT_DTYPES,
    DenseSubspace,
    MatrixFreeTangent,
    decoder_in_dtype,
    tangent_space,
)

if TYPE_CHECKING:
    import pandas as pd

    from runners.models.autoencoders import Autoencoder

__all__ = ["COLUMNS", "MODES", "MembershipError", "Measurement", "check_membership",
           "correctly_classified", "measure"]


#: Column order of :meth:`Measurement.to_frame`.
COLUMNS: tuple[str, ...] = tuple(c for c in SCHEMAS["measurements"]
                                 if c not in ("seed", "autoencoder"))  # the pipeline adds those



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
        (position of the image whose tangent gave ``r_Tother``, -1 if none),
        ``projection_iters_<on|off>`` and ``projection_residual_<on|off>`` (projection iterations
        summed over the steps and the largest residual, under ``attack.box: strict``),
        ``base_iterations`` (Levenberg-Marquardt iterations, ``tangent.at: nearest``), and on
        the matrix-free path ``solver_iterations`` (mean CG/LSQR iterations per projection).
    method : str
        ``"dense"`` or ``"matrix_free"``.
    base : Tensor or None
        The attacks' base points ``(N, C, H, W)``: ``x_m = D(z*)`` under ``attack.base:
        manifold``, None when they are the images themselves.
    """

    columns: dict[str, np.ndarray]
    delta: dict[str, Tensor]
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)
    method: str = "dense"
    base: Tensor | None = None

    def __len__(self) -> int:
        return len(self.columns["sample"])

    def to_frame(self) -> pd.DataFrame:
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


def _base_point(decode: Callable[[Tensor], Tensor], x: Tensor, z: Tensor,
                recon_err: Tensor | None, tangent: TangentConfig
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(z, base_err, converged, iterations)``: the tangent base point ``tangent.at`` asks for.

    ``recon_err`` is ``||x - D(E(x))||`` when known; under ``encoder`` it is the base error (NaN
    where not given: the other image's base point, whose error is not a column).
    """
    if tangent.at in (None, "encoder"):
        err = (recon_err.clone() if recon_err is not None
               else torch.full((len(z),), float("nan"), dtype=torch.float64))
        return (z, err, torch.ones(len(z), dtype=torch.bool),
                torch.zeros(len(z), dtype=torch.int64))
    from runners.geometry.nearest import nearest_latent

    dtype = TANGENT_DTYPES[tangent.dtype]
    found = nearest_latent(decode, x.to(dtype), z.to(dtype),
                           max_iter=tangent.nearest_max_iter, tol=tangent.nearest_tol,
                           chunk_size=tangent.chunk_size)
    return (found.z.to(z.dtype), found.err.cpu().to(torch.float64), found.converged.cpu(),
            found.iterations.cpu())


class MembershipError(RunFailure):
    """Strict on/off-manifold perturbations that are not in T / T-perp: a bug, not a finding."""


#: Under ``attack.box: strict`` a shard whose successful on-manifold rows have a median
#: ``in_T_on`` below this, or off-manifold rows a median ``in_T_off`` above
#: :data:`IN_T_OFF_MAX`, stops the run.
IN_T_ON_MIN = 0.999
IN_T_OFF_MAX = 1e-3


def check_membership(frame: pd.DataFrame, *, where: str, check_on: bool = True) -> None:
    """Raise :class:`MembershipError` when strict on/off perturbations left their subspace.

    Parameters
    ----------
    frame : pandas.DataFrame
        A measurement shard (columns ``in_T_on``, ``in_T_off``, ``success_on``, ``success_off``).
    where : str
        Names the shard in the message (seed, autoencoder, shard index, store key).
    check_on : bool
        Judge the on-manifold rows (False for ``attack.on_manifold: latent``, whose curved
        perturbations are not meant to lie in the tangent plane).

    Examples
    --------
    >>> import pandas as pd
    >>> ok = pd.DataFrame({"in_T_on": [1.0], "success_on": [True], "in_T_off": [0.5],
    ...                    "success_off": [False]})
    >>> check_membership(ok, where="seed 0")  # failed off attacks are not judged
    >>> check_membership(ok.assign(in_T_on=[0.9]), where="seed 0")
    Traceback (most recent call last):
    ...
    runners.measure.MembershipError: seed 0: strict on-manifold perturbations left T: median in_T_on 0.9 < ...
    """
    problems = []
    on = frame.loc[frame["success_on"].astype(bool), "in_T_on"].dropna()
    if check_on and len(on) and float(on.median()) < IN_T_ON_MIN:
        problems.append(f"strict on-manifold perturbations left T: median in_T_on "
                        f"{float(on.median()):.4g} < {IN_T_ON_MIN} over {len(on)} successful rows")
    off = frame.loc[frame["success_off"].astype(bool), "in_T_off"].dropna()
    if len(off) and float(off.median()) > IN_T_OFF_MAX:
        problems.append(f"strict off-manifold perturbations left T-perp: median in_T_off "
                        f"{float(off.median()):.4g} > {IN_T_OFF_MAX} over {len(off)} "
                        "successful rows")
    if problems:
        raise MembershipError(f"{where}: " + "; ".join(problems)
                              + " (a bug in the feasible-set projection, not a finding)")


#: A strict tangent-plane attack whose feasible set reaches less than this share of eps (a
#: certified lower bound, :func:`runners.geometry.feasible_cone.tangent_reach`) cannot tell "the
#: boundary is far along T" from "the pixel box forbids moving along T": not measurable.
MIN_REACH_SHARE = 0.01


def _attack_base(classifier: nn.Module, autoencoder: Autoencoder, x: Tensor, y: Tensor,
                 z: Tensor, attack: AttackConfig) -> tuple[Tensor, Tensor]:
    """``(base images, base_ok)``: ``x`` itself, or ``D(z*)`` and whether it is still ``y``."""
    if attack.base == "image":
        return x, torch.ones(len(x), dtype=torch.bool, device=x.device)
    with torch.no_grad():
        xb = autoencoder.decode(z.to(x.dtype)).reshape(x.shape)
        ok = classifier(xb).argmax(dim=1) == y
    return xb, ok


def _float64_tangent(autoencoder: Autoencoder, z: Tensor, space: DenseSubspace,
                    tangent: TangentConfig) -> DenseSubspace:
    """The tangent space in float64 for the strict tangent-plane attack and its reach.

    Inside the box, a pixel the decoder saturates has a tangent row of size ~1e-6 against a
    slack to its bound of the same size, so the feasible cone of ``(x + T) ∩ box`` is decided
    at the 1e-6 relative level, where a float32 Jacobian and QR carry errors of 1e-7 relative
    to the largest row. Measured on 29 MNIST conv images at ``D(z*)`` (seed 0): with the float32
    basis the attack flipped 5 and called 2 images' sets ``{0}``; with the float64 basis of an
    independent re-derivation it flipped the same 20 images as that study's own solver.
    """
    if space.dtype == torch.float64:
        return space
    config = tangent.model_copy(update={"dtype": "float64", "method": "dense"})
    return tangent_space(decoder_in_dtype(autoencoder, torch.float64), z, config=config,
                         n=space.n)  # type: ignore[return-value]


def _on_manifold(classifier: nn.Module, autoencoder: Autoencoder, xb: Tensor, y: Tensor,
                 z: Tensor, space: DenseSubspace | MatrixFreeTangent, *, attack: AttackConfig,
                 tangent: TangentConfig, generator: torch.Generator, bounds: Bounds,
                 cols: dict[str, Tensor]) -> AttackResult:
    """The on-manifold attack ``attack.on_manifold`` asks for; fills measurable_on, reach_on
    and path_on."""
    nan = torch.full((len(xb),), float("nan"), dtype=torch.float64)
    cols["reach_on"], cols["path_on"] = nan.clone(), nan.clone()
    cols["measurable_on"] = torch.ones(len(xb), dtype=torch.bool)
    if attack.on_manifold == "latent":
        metric = None
        # The pull-back metric needs the dense Jacobian: whenever it fits (the same rule as
        # tangent.method auto, whatever method the tangent space itself used, so that dense and
        # matrix-free runs of a small decoder take the same steps).
        if xb[0].numel() * z.shape[1] <= tangent.matrix_free_threshold:
            metric = pullback_metric(autoencoder.decode, z, dtype=TANGENT_DTYPES[tangent.dtype],
                                     chunk_size=tangent.chunk_size)
        res = latent_attack(classifier, autoencoder.decode, z.to(xb.dtype), y,
                            eps=attack.eps["on"], step=attack.step["on"],
                            steps=int(attack.steps["on"]), metric=metric, loss=attack.loss,
                            refine=attack.refine, refine_steps=attack.refine_steps,
                            chunk_size=tangent.chunk_size)
        cols["path_on"] = res.path.cpu().to(torch.float64)
        return res
    if attack.box == "strict" and bounds is not None and isinstance(space, DenseSubspace):
        space = _float64_tangent(autoencoder, z, space, tangent)
        reach = tangent_reach(space.basis, xb, bounds=bounds, eps=attack.eps["on"])
        cols["reach_on"] = reach.reach.to(torch.float64)
        cols["measurable_on"] = reach.reach > MIN_REACH_SHARE * attack.eps["on"]
        if attack.norm == "l2":
            # Exact in k coordinates (an active-set QP per step, FMN-style radius search over
            # restarts): it finds the flips a 30-start SLSQP finds, which the pixel-space PGD
            # with an ADMM projection missed on a third of the digits.
            return strict_tangent_attack(
                classifier, xb, y, space.basis, eps=attack.eps["on"], bounds=bounds,
                steps=int(attack.steps["on"]), generator=generator, loss=attack.loss,
                refine_steps=attack.refine_steps)
    res = attack_from_config(attack, "on", bounds=bounds)(
        classifier, xb, y, project_gradient=space.on_manifold(), generator=generator)
    return res


def _measure_chunk(
    classifier: nn.Module,
    autoencoder: Autoencoder,
    x: Tensor,
    y: Tensor,
    x_other: Tensor,
    has_other: Tensor,
    *,
    attack: AttackConfig,
    tangent: TangentConfig,
    generator: torch.Generator,
    bounds: Bounds,
    controls: DataSubspaces | None,
) -> tuple[dict[str, Tensor], dict[str, Tensor], str, float | None, Tensor]:
    dtype = TANGENT_DTYPES[tangent.dtype]
    decode = decoder_in_dtype(autoencoder, dtype)
    # Under attack.base manifold the attacks start at x_m = D(z*): the tangent space is there.
    tangent = tangent.model_copy(update={"at": tangent.base_point(attack.base)})
    with torch.no_grad():
        z = autoencoder.encode(x)
        recon_err = (x - autoencoder.decode(z)).flatten(1).norm(dim=1).to(torch.float64)
    cols: dict[str, Tensor] = {}
    z, cols["base_err"], cols["base_converged"], cols["base_iterations"] = _base_point(
        decode, x, z, recon_err, tangent)
    xb, base_ok = _attack_base(classifier, autoencoder, x, y, z, attack)
    cols["base_ok"] = base_ok.cpu()
    n = x[0].numel()
    space = tangent_space(decode, z, config=tangent, n=n)
    cols.update({"n": torch.full((len(x),), n, dtype=torch.int64),
                 "k": space.dims.to(torch.int64), "recon_err": recon_err})
    deltas: dict[str, Tensor] = {}
    projections = {"plain": None, "on": space.on_manifold(), "off": space.off_manifold()}
    for mode in MODES:
        if mode == "on":
            res = _on_manifold(classifier, autoencoder, xb, y, z, space, attack=attack,
                               tangent=tangent, generator=generator, bounds=bounds, cols=cols)
        else:
            res = attack_from_config(attack, mode, bounds=bounds)(
                classifier, xb, y, project_gradient=projections[mode], generator=generator)
        eps = torch.full((len(x),), res.eps, dtype=torch.float64)
        success = res.success.cpu() & cols["base_ok"]
        # Censored rows carry eps exactly (the float64 budget, not its float32 rounding); a
        # base point the classifier already gets wrong has no minimal norm at all.
        norm = torch.where(success, res.norm.cpu().to(torch.float64), eps)
        cols[f"norm_{mode}"] = torch.where(cols["base_ok"], norm, float("nan"))
        cols[f"success_{mode}"] = success
        cols[f"eps_{mode}"] = eps
        cols[f"steps_{mode}"] = res.steps
        if mode != "plain":
            iters = res.projection_iters
            resid = res.projection_residual
            cols[f"projection_iters_{mode}"] = (torch.zeros(len(x), dtype=torch.int64)
                                                if iters is None else iters)
            cols[f"projection_residual_{mode}"] = (
                torch.zeros(len(x), dtype=torch.float64) if resid is None
                else resid.to(torch.float64))
        deltas[mode] = res.delta
    unmeasurable = ~cols["measurable_on"]
    cols["norm_on"] = torch.where(unmeasurable, float("nan"), cols["norm_on"])
    cols["success_on"] = cols["success_on"] & ~unmeasurable
    # What the on/off perturbations are called is checked, not assumed: their share in T.
    cols["in_T_on"] = space.ratio(deltas["on"]).to(torch.float64)
    cols["in_T_off"] = space.ratio(deltas["off"]).to(torch.float64)
    plain = deltas["plain"]
    cols["r_T"] = space.ratio(plain).to(torch.float64)
    if isinstance(space, DenseSubspace):
        control = random_subspace(n, space.dims, generator=generator, dtype=dtype,
                                  device=x.device)
        cols["r_R"] = control.ratio(plain).to(torch.float64)
    else:
        # n * k too large for an explicit random basis: an exact draw of the same law, O(n).
        cols["r_R"] = random_subspace_ratio(n, space.dims, generator=generator)
    nan = torch.full((len(x),), float("nan"), dtype=torch.float64)
    if controls is not None:
        cols["r_PCA"] = controls.principal(space.dims, device=x.device, dtype=dtype).ratio(
            plain).cpu().to(torch.float64)
        cols["r_Rdata"] = controls.data_random(space.dims, generator=generator, device=x.device,
                                               dtype=dtype).ratio(plain).cpu().to(torch.float64)
    else:
        cols["r_PCA"], cols["r_Rdata"] = nan.clone(), nan.clone()
    grad = input_gradient(classifier, xb, y, loss="margin")
    cols["r_T_grad"] = space.ratio(grad).to(torch.float64)
    has_other = has_other.cpu()
    other_plain, other_grad = nan.clone(), nan.clone()
    if bool(has_other.any()):
        rows = has_other.nonzero().squeeze(1)
        with torch.no_grad():
            z_other = autoencoder.encode(x_other[rows])
        # The other image's tangent at ITS base point, chosen the same way as this image's.
        z_other = _base_point(decode, x_other[rows], z_other, None, tangent)[0]
        other = tangent_space(decode, z_other, config=tangent, n=n)
        other_plain[rows] = other.ratio(plain[rows]).cpu().to(torch.float64)
        other_grad[rows] = other.ratio(grad[rows]).cpu().to(torch.float64)
    cols["r_Tother"], cols["r_T_grad_other"] = other_plain, other_grad
    cols["iso_cond"] = space.gram_condition(generator=generator).to(torch.float64)
    iters = None
    if isinstance(space, MatrixFreeTangent) and space.history:
        iters = float(torch.cat([h.iterations for h in space.history]).double().mean())
    method = "dense" if isinstance(space, DenseSubspace) else "matrix_free"
    # The table is assembled on the CPU whatever device the models ran on.
    cols = {name: t.detach().cpu() for name, t in cols.items()}
    deltas = {name: t.detach().cpu() for name, t in deltas.items()}
    return cols, deltas, method, iters, xb.detach().cpu()


def measure(
    classifier: nn.Module,
    autoencoder: Autoencoder,
    x: Tensor,
    y: Tensor,
    *,
    attack: AttackConfig | None = None,
    tangent: TangentConfig | None = None,
    generator: torch.Generator,
    bounds: Bounds = (0.0, 1.0),
    sample_ids: Sequence[int] | np.ndarray | Tensor | None = None,
    image_ids: Sequence[int] | np.ndarray | Tensor | None = None,
    controls: DataSubspaces | None = None,
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
    image_ids : sequence of int or None
        Values of the ``image_id`` column (indices in the dataset's split, stable across seeds);
        default ``sample_ids``.
    controls : DataSubspaces or None
        Training-data principal subspace and covariance for ``r_PCA`` and ``r_Rdata`` (NaN
        when None).

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
    images = (ids if image_ids is None
              else np.asarray(torch.as_tensor(image_ids), dtype=np.int64))
    if len(ids) != len(x) or len(images) != len(x):
        raise ValueError(f"{len(x)} samples but {len(ids)} sample_ids and {len(images)} image_ids")
    other = other_same_class(y, generator=generator)
    chunks: list[dict[str, Tensor]] = []
    deltas: list[dict[str, Tensor]] = []
    bases: list[Tensor] = []
    method, iters = "dense", []
    with _eval_mode(classifier, autoencoder):
        for start in range(0, len(x), attack.batch_size):
            sl = slice(start, start + attack.batch_size)
            has = other[sl] >= 0
            cols, dl, method, it, xb = _measure_chunk(
                classifier, autoencoder, x[sl], y[sl], x[other[sl].clamp(min=0)], has,
                attack=attack, tangent=tangent, generator=generator, bounds=bounds,
                controls=controls)
            chunks.append(cols)
            deltas.append(dl)
            bases.append(xb)
            if it is not None:
                iters.append(it)
    cat = {name: torch.cat([c[name] for c in chunks]) for name in chunks[0]}
    columns = {"sample": ids, "image_id": images, "label": y.cpu().numpy().astype(np.int64)}
    columns.update({name: cat[name].numpy() for name in COLUMNS if name in cat})
    diagnostics = {f"steps_{m}": cat[f"steps_{m}"].numpy() for m in MODES}
    for m in ("on", "off"):
        diagnostics[f"projection_iters_{m}"] = cat[f"projection_iters_{m}"].numpy()
        diagnostics[f"projection_residual_{m}"] = cat[f"projection_residual_{m}"].numpy()
    diagnostics["base_iterations"] = cat["base_iterations"].numpy()
    diagnostics["other_index"] = other.numpy()
    if iters:
        diagnostics["solver_iterations"] = np.asarray(iters)
    return Measurement(columns=columns,
                       delta={m: torch.cat([d[m] for d in deltas]) for m in MODES},
                       diagnostics=diagnostics, method=method,
                       base=None if attack.base == "image" else torch.cat(bases))
