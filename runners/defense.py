"""The projection defense (claim ``iso.defense``) and its ADAPTIVE white-box evaluation.

A defended model classifies the projection of its input onto the autoencoder's manifold,
``f(P(x))``, so that off-manifold perturbations are removed before the classifier sees them.
Two projections are available:

``encoder``
    ``P(x) = D(E(x))``. With an isometric autoencoder whose encoder is the decoder's
    pseudo-inverse this is the orthogonal projection onto the manifold.
``tangent``
    ``P(x) = D(z) + Q Q^T (x - D(z))``, ``z = E(x)``, ``Q`` the tangent QR basis at ``z``: the
    encoder's output corrected onto the decoder's tangent plane, i.e. the local linearisation.
    For an exact orthogonal projection the residual ``x - D(z)`` is normal and the correction
    vanishes; for a non-isometric encoder it restores the tangent part the encoder lost.

The evaluation is the honest one (Athalye, Carlini & Wagner 2018): PGD on the WHOLE defended
model, differentiating through ``P``. Gradients through ``P``:

* ``autograd`` (the default whenever ``P``'s output carries a gradient): exact backpropagation
  through ``E`` and ``D``; for ``tangent`` the basis ``Q`` is held constant in the backward pass
  (its own derivative would need third derivatives of ``D``; the error is second order in the
  residual).
* ``bpda`` (used automatically when ``P``'s output carries NO gradient, e.g. the oracle's
  Gauss-Newton encoder runs under ``no_grad`` and would otherwise hand the attacker a zero
  gradient, i.e. obfuscate it): the backward pass of ``P`` is replaced by the tangent projector
  ``Q Q^T`` at ``P(x)``, which is the exact derivative of the orthogonal projection onto a
  manifold at a point on it (exact everywhere for a linear manifold).

A defense that only obfuscated gradients would show robust accuracy against every attack; the
tests therefore also require the adaptive ON-manifold attack through the projection to succeed.

``every`` (the protocol's default) runs both and counts an image as robust only if every attack
fails, as AutoAttack does for its ensemble: in the committed records neither gradient is the
stronger on every image (BPDA was the weaker overall on the differentiable projections, yet
some images fell to it alone), so one attack's robust accuracy is only an upper bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from dimple_stats.protocol.schema import DefenseConfig, TangentConfig
from runners.attacks.base import Bounds, MinimalNormAttack
from runners.attacks.factory import make_attack
from runners.geometry.spaces import TANGENT_DTYPES, decoder_in_dtype, tangent_space
from runners.geometry.tangent import tangent_basis
from runners.measure import correctly_classified

if TYPE_CHECKING:
    import pandas as pd

    from runners.models.autoencoders import Autoencoder

__all__ = ["Projection", "ProjectionDefense", "robust_correct", "defense_name", "NO_DEFENSE",
           "attack_gradients", "worst_over_attacks", "robust_correct_every"]

Projection = Literal["encoder", "tangent"]
#: The ``defense`` value of the undefended classifier in the defense table.
NO_DEFENSE = "none"


def attack_gradients(gradient: str) -> tuple[Literal["auto", "autograd", "bpda"], ...]:
    """The gradients a defense is attacked with, one attack each (``every``: both).

    >>> attack_gradients("every"), attack_gradients("bpda")
    (('auto', 'bpda'), ('bpda',))
    """
    return ("auto", "bpda") if gradient == "every" else (gradient,)  # type: ignore[return-value]


def worst_over_attacks(robust: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per image: robust only if every attack failed, and which attacks broke it.

    ``robust`` maps each attack's name (the gradient it used) to its per-image robust-correct
    flags. Returns the combined flags and, per image, the names of the attacks that succeeded
    joined by ``+`` ("" where none did).

    >>> rob, by = worst_over_attacks({"autograd": np.array([True, False, True]),
    ...                               "bpda": np.array([True, True, False])})
    >>> rob.tolist(), by.tolist()
    ([True, False, False], ['', 'autograd', 'bpda'])
    """
    names = list(robust)
    flags = np.stack([np.asarray(robust[n], bool) for n in names])
    broken = np.array(["+".join(n for n, f in zip(names, col) if not f) for col in flags.T],
                      dtype=object)
    return flags.all(axis=0), broken


def defense_name(autoencoder: str, projection: Projection) -> str:
    """Row name in the defense table: the autoencoder's name, ``<name>:tangent`` for ``tangent``.

    >>> defense_name("isometric", "encoder"), defense_name("isometric", "tangent")
    ('isometric', 'isometric:tangent')
    """
    return autoencoder if projection == "encoder" else f"{autoencoder}:{projection}"


class _TangentBackward(torch.autograd.Function):
    """BPDA: forward returns the given projection, backward applies ``Q Q^T`` per sample."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, projected: Tensor, basis: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(basis)
        ctx.shape = x.shape
        return projected.detach().clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (basis,) = ctx.saved_tensors
        g = grad.reshape(len(grad), -1).to(basis.dtype)
        g = torch.einsum("bnk,bk->bn", basis, torch.einsum("bnk,bn->bk", basis, g))
        return g.to(grad.dtype).reshape(ctx.shape), None, None


class ProjectionDefense(nn.Module):
    """``classifier(P(x))`` with ``P`` the autoencoder's (or its tangent-corrected) projection.

    Parameters
    ----------
    classifier : nn.Module
        Images to logits.
    autoencoder : Autoencoder
        ``encode``/``decode`` define the manifold.
    projection : {"encoder", "tangent"}
        See the module notes.
    gradient : {"auto", "autograd", "bpda"}
        How the backward pass goes through ``P`` (module notes); :attr:`gradient_used` says what
        ``auto`` chose on the last call.
    tangent : TangentConfig or None
        dtype, rank tolerance and chunk size of the tangent bases (dense QR only).
    bounds : (lo, hi) or None
        Pixel box; the tangent correction can leave it, so its output is clamped into it.
    """

    def __init__(self, classifier: nn.Module, autoencoder: Autoencoder, *,
                 projection: Projection = "encoder",
                 gradient: Literal["auto", "autograd", "bpda"] = "auto",
                 tangent: TangentConfig | None = None, bounds: Bounds = None) -> None:
        super().__init__()
        self.classifier = classifier
        self.autoencoder = autoencoder
        self.projection = projection
        self.gradient = gradient
        self.tangent = tangent or TangentConfig()
        self.bounds = bounds
        self.gradient_used: str = ""
        self._decode: Callable[[Tensor], Tensor] | None = None

    def _basis(self, z: Tensor) -> Tensor:
        dtype = TANGENT_DTYPES[self.tangent.dtype]
        if self._decode is None:
            self._decode = decoder_in_dtype(self.autoencoder, dtype)
        tb = tangent_basis(self._decode, z.detach(), dtype=dtype, rank_tol=self.tangent.rank_tol,
                           chunk_size=self.tangent.chunk_size)
        return tb.basis.to(z.device)

    def _clamp(self, x: Tensor) -> Tensor:
        if self.bounds is None:
            return x
        return x.clamp(float(self.bounds[0]), float(self.bounds[1]))  # type: ignore[arg-type]

    def project(self, x: Tensor) -> Tensor:
        """``P(x)``, differentiable (by autograd or BPDA) whenever ``x`` requires grad."""
        z = self.autoencoder.encode(x)
        recon = self.autoencoder.decode(z)
        tracks = x.requires_grad and recon.requires_grad
        use_bpda = self.gradient == "bpda" or (self.gradient == "auto" and x.requires_grad
                                               and not tracks)
        basis = self._basis(z) if (self.projection == "tangent" or use_bpda) else None
        if self.projection == "tangent":
            flat = (x - recon).reshape(len(x), -1).to(basis.dtype)  # type: ignore[union-attr]
            corr = torch.einsum("bnk,bk->bn", basis, torch.einsum("bnk,bn->bk", basis, flat))
            out = self._clamp(recon + corr.to(x.dtype).reshape(x.shape))
        else:
            out = recon
        if use_bpda:
            self.gradient_used = "bpda"
            return _TangentBackward.apply(x, out, basis)
        if x.requires_grad:
            self.gradient_used = "autograd"
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.project(x))


def _attack(config: DefenseConfig, norm: Literal["l2", "linf"], eps: float,
            bounds: Bounds) -> MinimalNormAttack:
    # Fixed-budget robust accuracy with PGD, the adaptive attack of the evaluation protocol:
    # no refinement, early stop (a success is final).
    return make_attack("pgd", norm, eps=eps, step=config.step_fraction() * eps,
                       steps=config.steps, loss="margin", random_start=config.random_start,
                       early_stop=True, refine=False, bounds=bounds)


def robust_correct(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    config: DefenseConfig,
    norm: Literal["l2", "linf"] = "l2",
    threat_space: Any | None = None,
    generator: torch.Generator | None = None,
    bounds: Bounds = (0.0, 1.0),
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Clean and robust correctness of ``model`` (a defended or plain classifier) at budget eps.

    Parameters
    ----------
    model : nn.Module
        In eval mode; attacked white-box (gradients through everything it computes).
    x, y : Tensor
        Images and labels; samples misclassified without attack are robust-incorrect.
    eps : float
        Attack budget (L2 or Linf per ``norm``).
    config : DefenseConfig
        Steps, step fraction, random start of the adaptive PGD.
    threat_space : Subspace or None
        For threat ``on_manifold``/``off_manifold``: the tangent spaces (one per sample of
        ``x``) whose span (on) or orthogonal complement (off) every gradient step is projected
        onto.
    generator : torch.Generator or None
        For random starts.

    Returns
    -------
    (clean_correct, robust_correct) : tuple of numpy bool arrays
    """
    clean = correctly_classified(model, x, y, batch_size=batch_size)
    attack = _attack(config, norm, eps, bounds)
    robust = []
    for start in range(0, len(x), batch_size):
        sl = slice(start, start + batch_size)
        project = None
        if threat_space is not None and config.threat != "unrestricted":
            offset = start

            def project(g: Tensor, idx: Tensor, _o: int = offset) -> Tensor:
                return (threat_space.project if config.threat == "on_manifold"
                        else threat_space.complement)(g, idx + _o).to(g.dtype)

        res = attack(model, x[sl], y[sl], project_gradient=project, generator=generator)
        robust.append(~res.success.cpu())
    rob = torch.cat(robust) & clean.cpu()
    return clean.cpu().numpy(), rob.numpy()


def robust_correct_every(
    models: list[nn.Module],
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    config: DefenseConfig,
    norm: Literal["l2", "linf"] = "l2",
    threat_space: Any | None = None,
    generators: list[torch.Generator | None] | None = None,
    bounds: Bounds = (0.0, 1.0),
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
    """:func:`robust_correct` under several attacks on one defended model, per image the worst
    case: robust only if every attack fails.

    ``models`` are the same defended model differentiated in different ways (one
    :class:`ProjectionDefense` per gradient of :func:`attack_gradients`); ``generators`` one per
    model. Returns clean correctness, the combined robust correctness, the attacks' gradient
    names joined by ``+`` (an ``auto`` that fell back to BPDA merges with ``bpda``), and per
    image which attacks flipped it ("" where none did or the clean image was already wrong).
    """
    robust: dict[str, np.ndarray] = {}
    clean = np.zeros(len(x), bool)
    for i, model in enumerate(models):
        if getattr(model, "gradient", "") == "bpda" and "bpda" in robust:
            continue  # an "auto" attack already fell back to BPDA: the same attack again
        clean, rob = robust_correct(
            model.eval(), x, y, eps=eps, config=config, norm=norm, threat_space=threat_space,
            generator=generators[i] if generators else None, bounds=bounds,
            batch_size=batch_size)
        used = getattr(model, "gradient_used", "") or "autograd"
        robust[used] = robust[used] & rob if used in robust else rob
    combined, broken_by = worst_over_attacks(robust)
    return clean, combined, "+".join(robust), np.where(clean, broken_by, "").astype(str)


def threat_subspace(autoencoder: Autoencoder, x: Tensor, tangent: TangentConfig) -> Any:
    """The tangent spaces at ``E(x)`` that the threats ``on_manifold``/``off_manifold`` restrict
    the attack to."""
    decode = decoder_in_dtype(autoencoder, TANGENT_DTYPES[tangent.dtype])
    with torch.no_grad():
        z = autoencoder.encode(x)
    return tangent_space(decode, z, config=tangent, n=x[0].numel())


def defense_frame(seed: int, name: str, eps: float, samples: np.ndarray, clean: np.ndarray,
                  robust: np.ndarray, threat: str) -> pd.DataFrame:
    """Rows of the ``defense`` table (schema in :mod:`dimple_stats.measurements`)."""
    import pandas as pd

    return pd.DataFrame({
        "seed": np.full(len(samples), seed, dtype=np.int64), "defense": name,
        "eps": np.full(len(samples), float(eps)), "sample": samples.astype(np.int64),
        "robust_correct": robust.astype(bool), "clean_correct": clean.astype(bool),
        "threat": threat})
