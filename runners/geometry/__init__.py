"""Tangent spaces of decoders: Jacobians by forward mode, QR bases, projections, controls.

* :mod:`~runners.geometry.jacobian`: ``decoder_jacobian`` (``vmap(jacfwd)``, chunked).
* :mod:`~runners.geometry.tangent`: dense bases by reduced QR with numerical rank (``tangent_basis``).
* :mod:`~runners.geometry.matrix_free`: ``P_T v`` by CG/LSQR on JVP/VJP products (ImageNet scale).
* :mod:`~runners.geometry.spaces`: the :class:`Subspace` interface and the ``auto`` front doors
  ``tangent_space`` and ``project``.
* :mod:`~runners.geometry.controls`: random subspaces and other images' tangent spaces.
* :mod:`~runners.geometry.isometry`: how far a decoder is from an isometry.
"""

from runners.geometry.controls import (
    beta_moments,
    other_same_class,
    random_subspace,
    random_subspace_ratio,
)
from runners.geometry.jacobian import decoder_jacobian
from runners.geometry.matrix_free import (
    LinearizedDecoder,
    ProjectionResult,
    SolveInfo,
    gram_extreme_eigenvalues,
    project_matrix_free,
    solve_normal_equations,
)
from runners.geometry.spaces import (
    DenseSubspace,
    GradientProjection,
    MatrixFreeTangent,
    Subspace,
    decoder_in_dtype,
    project,
    resolve_method,
    tangent_space,
)
from runners.geometry.tangent import (
    TangentBasis,
    basis_from_jacobian,
    default_rank_tol,
    largest_principal_angle,
    tangent_basis,
)

__all__ = [
    "DenseSubspace",
    "GradientProjection",
    "LinearizedDecoder",
    "MatrixFreeTangent",
    "ProjectionResult",
    "SolveInfo",
    "Subspace",
    "TangentBasis",
    "basis_from_jacobian",
    "beta_moments",
    "decoder_in_dtype",
    "decoder_jacobian",
    "default_rank_tol",
    "gram_extreme_eigenvalues",
    "largest_principal_angle",
    "other_same_class",
    "project",
    "project_matrix_free",
    "random_subspace",
    "random_subspace_ratio",
    "resolve_method",
    "solve_normal_equations",
    "tangent_basis",
    "tangent_space",
]
