"""Typed, frozen models of a dimple-stats protocol.

A protocol is data: it names a dataset, a classifier, one or more autoencoders, an attack, the
tangent-space method, the claims to test and the statistics settings. Every model forbids unknown
keys so that a misspelt option is an error rather than a silently ignored default.

The models import nothing heavy (no torch), so protocols validate on any machine.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    Field,
    NonNegativeInt,
    field_validator,
    model_validator,
)

from dimple_stats.claims.entry import ClaimEntry, ClaimItem
from dimple_stats.protocol.datasets import (
    DatasetCommon,
    DatasetConfig,
    DigitsDataset,
    Frozen,
    ImageFolderDataset,
    LinearSubspaceDataset,
    LiveDatasets,
    SyntheticDataset,
    TorchvisionDataset,
    dataset_adapter,
    dataset_union,
)
from dimple_stats.protocol.sweep import SweepConfig
from dimple_stats.protocol.vocabulary import (
    ATTACK_METHODS,
    AUTOENCODER_ARCHS,
    CLASSIFIER_ARCHS,
    EXECUTORS,
    REPORT_FORMATS,
    registered_name,
)
from dimple_stats.seeds import MAX_SEEDS, repeated
from dimple_stats.stats_config import StatsConfig

__all__ = [
    "DatasetCommon",
    "LiveDatasets",
    "dataset_adapter",
    "dataset_union",
    "Frozen",
    "SyntheticDataset",
    "LinearSubspaceDataset",
    "DigitsDataset",
    "TorchvisionDataset",
    "ImageFolderDataset",
    "DatasetConfig",
    "AdversarialTrainingConfig",
    "ClassifierConfig",
    "NoRegulariser",
    "IsometricRegulariser",
    "IRVAERegulariser",
    "AutoencoderConfig",
    "PerMode",
    "AttackConfig",
    "TangentConfig",
    "StatsConfig",
    "ReportConfig",
    "DefenseConfig",
    "SweepConfig",
    "Protocol",
    "CLASSIFIER_ARCHS",
    "AUTOENCODER_ARCHS",
]


_TORCHVISION_ARCH = re.compile(r"^torchvision:[A-Za-z_][A-Za-z0-9_]*\Z")


class AdversarialTrainingConfig(Frozen):
    """PGD adversarial training (Madry et al. 2018): every batch is replaced by its PGD examples."""

    norm: Literal["l2", "linf"] = Field("l2", description="Threat model of the training attack.")
    eps: float = Field(1.0, gt=0, description="Budget of the training attack.")
    step: float | None = Field(
        None, gt=0, description="Step length of the training attack (null: 2.5 * eps / steps)."
    )
    steps: int = Field(10, ge=1, description="PGD steps per training batch.")
    random_start: bool = Field(
        True, description="Start each training attack uniformly in the eps-ball."
    )

    @property
    def step_size(self) -> float:
        """The step length actually used (Madry's 2.5 * eps / steps when ``step`` is null)."""
        return float(self.step) if self.step is not None else 2.5 * self.eps / self.steps


#: The widest layer a protocol may ask for: 10**12 units would be refused only by the allocator.
MAX_WIDTH = 1 << 16
#: A layer width: at least one unit (a zero-width layer trains nothing), at most MAX_WIDTH.
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]


class ClassifierConfig(Frozen):
    """The classifier under attack: trained from the protocol or loaded from a checkpoint."""

    arch: str = Field(
        "mlp",
        description="One of " + ", ".join(CLASSIFIER_ARCHS) + ", or 'torchvision:<name>' "
        "(dimple_stats.protocol.vocabulary.CLASSIFIER_ARCHS registers more).",
    )
    checkpoint: str | None = Field(
        None, description="A user's trained weights (state dict); training is skipped."
    )
    hidden: tuple[Width, ...] = Field((256, 256), description="Hidden widths of the mlp.")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    epochs: int = Field(20, ge=0)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    patience: int | None = Field(
        5, ge=1, description="Early stopping on the validation split (null: never)."
    )
    adversarial: AdversarialTrainingConfig | None = Field(
        None, description="Train adversarially with PGD (null: standard training). The claim "
        "dmm.adv_training_deepens trains the classifier both ways and uses these settings "
        "(their defaults when null) for the adversarial one."
    )

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        if v in CLASSIFIER_ARCHS or _TORCHVISION_ARCH.match(v):
            return v
        from dimple_stats.suggest import did_you_mean

        raise ValueError(
            f"unknown classifier arch {v!r}{did_you_mean(v, CLASSIFIER_ARCHS)}; "
            f"allowed: {', '.join(CLASSIFIER_ARCHS)}, torchvision:<name>"
        )


class NoRegulariser(Frozen):
    """A plain autoencoder: reconstruction loss only."""

    kind: Literal["none"]


class IsometricRegulariser(Frozen):
    """Gropp et al. 2020: weight * (L_iso + L_piso), norms taken before squaring."""

    kind: Literal["isometric"]
    weight: float = Field(1.0, gt=0)
    interpolate: bool = Field(
        False, description="Also sample z on segments between encoded training points."
    )


class IRVAERegulariser(Frozen):
    """Lee et al. 2022: relaxed distortion Tr(H^2)/(Tr H)^2 with latent mixup."""

    kind: Literal["irvae"]
    weight: float = Field(1.0, gt=0)
    eta: float = Field(0.2, ge=0, description="Mixup extrapolation: alpha ~ U[-eta, 1+eta].")


Regulariser = Annotated[
    NoRegulariser | IsometricRegulariser | IRVAERegulariser, Field(discriminator="kind")
]



class AutoencoderConfig(Frozen):
    """An autoencoder whose decoder defines the manifold; 'oracle' is the true generator (synthetic)."""

    arch: registered_name(AUTOENCODER_ARCHS) = Field(
        "conv", description="One of " + ", ".join(AUTOENCODER_ARCHS) + " "
        "(dimple_stats.protocol.vocabulary.AUTOENCODER_ARCHS registers more).")
    latent_dim: int | None = Field(
        None, ge=1, description="Latent size k (the oracle uses the dataset's)."
    )
    hidden: tuple[Width, ...] | None = Field(
        None, description="Channel widths (conv) or layer widths (mlp); an architecture default when null."
    )
    regulariser: Regulariser = Field(default_factory=lambda: NoRegulariser(kind="none"))
    train_classes: tuple[NonNegativeInt, ...] | None = Field(
        None, min_length=1,
        description="Train on these classes only (the CIFAR-10 reproduction used 0 and 1)."
    )
    checkpoint: str | None = None
    epochs: int = Field(30, ge=0)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    patience: int | None = Field(5, ge=1)
    grad_clip: float | None = Field(
        None, gt=0, description="Clip the gradient's global L2 norm to this before each Adam "
        "step (null: no clipping). IRVAE's distortion ratio can spike and blow up an unclipped "
        "step."
    )

    @model_validator(mode="after")
    def _latent_required(self) -> AutoencoderConfig:
        if self.arch != "oracle" and self.latent_dim is None:
            raise ValueError(f"latent_dim is required for arch {self.arch!r}")
        return self


Mode = Literal["plain", "on", "off"]
#: The attack modes: unrestricted, on-manifold, off-manifold.
MODES: tuple[str, ...] = get_args(Mode)


class PerMode(Frozen):
    """A value per attack mode: unrestricted (plain), on-manifold (on), off-manifold (off)."""

    plain: float
    on: float
    off: float

    @model_validator(mode="before")
    @classmethod
    def _broadcast_scalar(cls, v: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return {"plain": v, "on": v, "off": v}
        return v

    def __getitem__(self, mode: str) -> float:
        return float(getattr(self, mode))


class PerModeSteps(PerMode):
    plain: int = Field(ge=1)  # type: ignore[assignment]
    on: int = Field(ge=1)  # type: ignore[assignment]
    off: int = Field(ge=1)  # type: ignore[assignment]


class AttackConfig(Frozen):
    """A minimal-norm attack (PGD by default). ``eps``/``step``/``steps`` take one number or one
    per mode."""

    method: registered_name(ATTACK_METHODS) = Field("pgd", description="Attack family, a name registered in "
                        "dimple_stats.protocol.vocabulary.ATTACK_METHODS. Built in: pgd; and, from "
                        "attack libraries (pip install \"dimple-stats[attacks]\"), fmn (l2, linf) "
                        "and ddn (l2) from foolbox, deepfool (l2) and fab (l2, linf) from "
                        "torchattacks. A library attack is the plain mode's attack only: it cannot "
                        "project gradients, so the on and off modes run pgd with their eps, step "
                        "and steps; its steps.plain are the library's iterations and step.plain is "
                        "unused.")
    norm: Literal["l2", "linf"] = "l2"
    loss: Literal["margin", "ce"] = "margin"
    eps: PerMode = Field(default_factory=lambda: PerMode(plain=2.0, on=10.0, off=10.0))
    step: PerMode = Field(default_factory=lambda: PerMode(plain=0.02, on=0.2, off=0.02))
    steps: PerModeSteps = Field(
        default_factory=lambda: PerModeSteps(plain=50, on=1000, off=1000)
    )
    early_stop: bool = True
    refine: bool = Field(True, description="Bisect along the found perturbation to the boundary.")
    refine_steps: int = Field(12, ge=1)
    random_start: bool = False
    batch_size: int = Field(64, ge=1)
    box: Literal["strict", "clip", "none"] = Field(
        "strict", description="Feasible set of the iterates. strict: every iterate stays in "
        "x + T (on), x + T-perp (off) and the pixel box, by the Euclidean projection onto "
        "their intersection (ADMM); clip: the reproduction's attack, projected step then clipped to the "
        "pixel box (the clip moves on-manifold perturbations out of T and off-manifold ones "
        "out of T-perp wherever pixels sit at a bound; kept for comparison); none: no pixel "
        "bounds.")
    box_tol: float = Field(1e-4, gt=0, description="Relative residual at which the strict "
                           "projection stops (distance from T or T-perp over the step's norm).")
    box_max_iter: int = Field(200, ge=1, description="Projection (ADMM) iterations per "
                              "step at most; the residual is recorded and checked.")
    base: Literal["manifold", "image"] = Field(
        "manifold", description="Base point of every attack mode. manifold (default): the "
        "nearest point of the decoder's image, x_m = D(z*), z* = argmin ||D(z) - x|| "
        "(Levenberg-Marquardt from E(x), tangent.nearest_*); unrestricted, on- and off-manifold "
        "norms then share one base point that lies ON the learned manifold, and the tangent "
        "space is taken there. Images whose x_m the classifier gets wrong are excluded and "
        "counted (column base_ok). image: the image x itself (the reproduction's), tangent at "
        "tangent.at.")
    on_manifold: Literal["latent", "tangent"] = Field(
        "latent", description="The on-manifold attack. latent (default, Stutz et al. 2019): x' "
        "= D(z* + delta), the minimal chord ||x' - D(z*)|| that flips the classifier (steepest "
        "ascent in the decoder's pull-back metric, then bisection along the latent segment); "
        "every x' is an image because the decoder's output is bounded; path_on records the "
        "length of the decoded curve. tangent: steps projected onto the tangent plane T at the "
        "base point, under attack.box (strict: exact k-coordinate search in (x + T) ∩ box ∩ "
        "ball; images whose feasible set is {x} are not_measurable).")

    @model_validator(mode="after")
    def _step_below_eps(self) -> AttackConfig:
        for mode in MODES:
            if self.step[mode] <= 0 or self.eps[mode] <= 0:
                raise ValueError(f"eps and step must be positive (mode {mode!r})")
        return self

    def unreachable(self) -> list[str]:
        """Modes whose eps-ball edge the attack cannot reach: every PGD step moves at most
        ``step`` (in the attack's norm), so ``steps * step < eps`` censors by construction every
        sample whose minimal perturbation lies between the two. Not an error: the
        reproduction's own MNIST budget is like this, and a protocol may mean to copy it.

        A library attack (``fmn``, ``ddn``, ``deepfool``, ``fab``) has no step length: its plain
        mode is not judged.

        >>> AttackConfig().unreachable()  # the reproduction's MNIST budget
        ['attack.steps.plain: 50 steps of 0.02 travel at most 1 < eps 2: attacks that need more ...']
        >>> AttackConfig(method="fmn").unreachable()
        []
        """
        from dimple_stats.protocol.vocabulary import LIBRARY_ATTACK_METHODS

        out = []
        for mode in MODES:
            if mode == "plain" and self.method in LIBRARY_ATTACK_METHODS:
                continue
            travel = self.steps[mode] * self.step[mode]
            if travel < self.eps[mode]:
                out.append(f"attack.steps.{mode}: {int(self.steps[mode])} steps of {self.step[mode]:g} "
                           f"travel at most {travel:g} < eps {self.eps[mode]:g}: attacks that "
                           "need more are censored by the step budget, not by eps")
        return out


class TangentConfig(Frozen):
    """How the decoder's tangent space is computed."""

    method: Literal["auto", "dense", "matrix_free"] = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    rank_tol: float | None = Field(
        None, gt=0, description="Relative singular-value cut-off of the rank; null: max(n, k) * "
        "machine eps."
    )
    chunk_size: int = Field(16, ge=1, description="Samples per vmap(jacfwd) call (bounds memory).")
    matrix_free_threshold: int = Field(
        50_000_000, ge=1, description="'auto' goes matrix-free when n*k exceeds this."
    )
    solver: Literal["cg", "lsqr"] = "cg"
    tol: float = Field(1e-4, gt=0, description="Relative residual of the matrix-free solve.")
    max_iter: int = Field(200, ge=1)
    at: Literal["encoder", "nearest"] | None = Field(
        None, description="Base point of the tangent space under attack.base: image (null means "
        "encoder there): the encoder's code z = E(x) (the reproduction's), or the nearest point "
        "of the decoder's image, z* = argmin ||D(z) - x|| found by Levenberg-Marquardt started "
        "at E(x) (columns base_err and base_converged record it). Under attack.base: manifold "
        "(null or nearest) the tangent is always at z*, where the attacks start; encoder is "
        "then refused.")

    def base_point(self, attack_base: str) -> Literal["encoder", "nearest"]:
        """The tangent base point in effect under ``attack.base``.

        >>> TangentConfig().base_point("manifold"), TangentConfig().base_point("image")
        ('nearest', 'encoder')
        """
        if attack_base == "manifold":
            return "nearest"
        return self.at or "encoder"
    nearest_max_iter: int = Field(50, ge=1, description="Levenberg-Marquardt iterations at "
                                  "most for at: nearest.")
    nearest_tol: float = Field(1e-6, gt=0, description="Relative first-order optimality at "
                               "which at: nearest stops.")


class ReportConfig(Frozen):
    formats: tuple[registered_name(REPORT_FORMATS), ...] = Field(
        ("csv", "latex", "markdown"), description="Table formats written, names registered in "
        "dimple_stats.protocol.vocabulary.REPORT_FORMATS (built in: csv, latex, markdown).")
    figures: bool = True


class DefenseConfig(Frozen):
    """The projection defense of claim iso.defense and the white-box attack that evaluates it.

    The defended model is ``classifier(P(x))``. ``P`` is ``D(E(x))`` (projection ``encoder``) or
    the encoder's output corrected onto the decoder's tangent plane, ``D(z) + Q Q^T (x - D(z))``
    with ``z = E(x)`` and ``Q`` the tangent QR basis at ``z`` (projection ``tangent``). The attack
    is white-box PGD on the WHOLE defended model: its gradient goes through ``P``.
    """

    projections: tuple[Literal["encoder", "tangent"], ...] = Field(
        ("encoder",), min_length=1,
        description="Projections to evaluate per autoencoder; 'tangent' rows are named "
        "'<autoencoder>:tangent' in the defense table.")
    # Spelled out rather than on/off: YAML 1.1 reads a bare `off` as the boolean false.
    threat: Literal["unrestricted", "on_manifold", "off_manifold"] = Field(
        "unrestricted", description="Directions the attacker may use: any, or every gradient "
        "step projected onto (on_manifold) or off (off_manifold) the tangent space of "
        "`manifold` at the clean image. 'unrestricted' is the honest adaptive evaluation; "
        "'off_manifold' tests whether the projection removes off-manifold perturbations.")
    manifold: str | None = Field(
        None, description="Autoencoder whose tangent space defines the threat on_manifold / "
        "off_manifold (default: the first autoencoder).")
    steps: int = Field(50, ge=1, description="Steps of the white-box PGD through the projection.")
    step: float | None = Field(
        None, gt=0, description="Step length as a FRACTION of eps (null: 2.5 / steps).")
    random_start: bool = Field(False, description="Start uniformly in the eps-ball.")
    gradient: Literal["every", "auto", "autograd", "bpda"] = Field(
        "every", description="How the attack differentiates the projection: 'autograd' through "
        "E and D; 'bpda' replaces the backward pass of P by the tangent projector Q Q^T at P(x) "
        "(the exact derivative of an orthogonal projection onto the manifold at a point on it); "
        "'auto' uses autograd and falls back to BPDA when P's output carries no gradient (an "
        "encoder computed under no_grad, e.g. the oracle's iterative inversion); 'every' (the "
        "default) runs both 'auto' and 'bpda' on each image, which counts as robust only if "
        "every attack fails (AutoAttack's per-image worst case: neither gradient is the "
        "stronger on every image).")

    def step_fraction(self) -> float:
        """Step length per unit of eps."""
        return float(self.step) if self.step is not None else 2.5 / self.steps


#: Names become folder names: ``\Z``, not ``$`` (which also matches before a final newline).
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,99}\Z")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)\Z")


class Protocol(Frozen):
    """A whole test protocol (see ``dimple-stats schema`` for the JSON Schema)."""

    name: str = Field(description="Identifier used for the report directory.")
    description: str = ""
    dataset: DatasetConfig
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    autoencoders: dict[str, AutoencoderConfig] = Field(min_length=1)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    tangent: TangentConfig = Field(default_factory=TangentConfig)
    claims: tuple[ClaimItem, ...] = Field(min_length=1)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    seeds: tuple[NonNegativeInt, ...] = Field((0,), min_length=1, max_length=MAX_SEEDS)
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    executor: registered_name(EXECUTORS) = Field(
        "local", description="Where the seeds run, a name registered in "
        "dimple_stats.protocol.vocabulary.EXECUTORS (built in: local, processes, ray).")
    report: ReportConfig = Field(default_factory=ReportConfig)
    defense: DefenseConfig = Field(
        default_factory=DefenseConfig, description="Projection defense (claim iso.defense).")
    sweep: SweepConfig | None = Field(
        None, description="Run every combination of these field values (a multiverse of "
        "specifications; see dimple_stats.protocol.sweep). null: one specification.")

    def cell_protocols(self) -> list[tuple[dict[str, Any], Protocol]]:
        """Each cell of :attr:`sweep` as ``(choices, protocol)``: this protocol with the cell's
        values set and no sweep; ``[({}, self)]`` without a sweep.

        Raises ``ValueError`` naming the cell when its protocol is invalid (the loader reports
        the same with file and line).
        """
        if self.sweep is None:
            return [({}, self)]
        from pydantic import ValidationError

        from dimple_stats.protocol.overrides import apply_overrides

        base = self.model_dump(mode="json", by_alias=True, exclude={"sweep"})
        out = []
        for choices in self.sweep.cells():
            data, _ = apply_overrides(base, list(choices.items()), file="sweep")
            try:
                out.append((choices, Protocol.model_validate(data)))
            except ValidationError as exc:
                raise ValueError(f"sweep cell {choices}: {exc}") from None
        return out

    @model_validator(mode="after")
    def _defense_manifold_known(self) -> Protocol:
        name = self.defense.manifold
        if name is not None and name not in self.autoencoders:
            from dimple_stats.suggest import did_you_mean

            raise ValueError(f"defense.manifold {name!r} is not an autoencoder of the protocol"
                             f"{did_you_mean(name, self.autoencoders)}; have "
                             f"{', '.join(self.autoencoders)}")
        return self

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("name must be letters, digits, '_' or '-' (at most 100, starting "
                             f"with a letter or '_'), got {v[:60]!r}{'...' if len(v) > 60 else ''}")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not _DEVICE.match(v):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {v!r}")
        return v

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        dupes = repeated(v)  # linear: `v.count` per seed took minutes for 50,000 seeds
        if dupes:
            raise ValueError(f"seeds must be distinct; repeated: {dupes}")
        return v

    @field_validator("claims")
    @classmethod
    def _unique_claims(cls, v: tuple[ClaimEntry, ...]) -> tuple[ClaimEntry, ...]:
        seen: dict[str, int] = {}
        for i, item in enumerate(v):
            key = json.dumps(item.model_dump(mode="json", by_alias=True, exclude_none=True),
                             sort_keys=True)
            if key in seen:
                raise ValueError(f"claim {item.id} is listed twice with the same options (items "
                                 f"{seen[key] + 1} and {i + 1}); remove one")
            seen[key] = i
        return v

    @field_validator("autoencoders")
    @classmethod
    def _ae_names(cls, v: dict[str, AutoencoderConfig]) -> dict[str, AutoencoderConfig]:
        for key in v:
            if not _NAME.match(key):
                raise ValueError("autoencoder name must be an identifier (at most 100 "
                                 f"characters), got {key[:60]!r}")
        return v

    @property
    def claim_ids(self) -> tuple[str, ...]:
        return tuple(entry.id for entry in self.claims)

    @property
    def tables(self) -> frozenset[str]:
        """The tables (``measurements``, ``defense``, ...) the protocol's claims read; a claim
        over a sweep's classifier pairs reads the cells' measurements."""
        from dimple_stats.claims import get_claim

        tables = {get_claim(cid).table for cid in self.claim_ids}
        if "classifier_pairs" in tables:
            tables.add("measurements")
        return frozenset(tables)

    @property
    def hash(self) -> str:
        """Canonical hash of the validated protocol (defaults filled in, key order irrelevant)."""
        from dimple_stats.hashing import canonical_hash

        return canonical_hash(self)
