"""Tangent spaces of decoders: Jacobians by forward mode, QR bases, projections."""

from runners.geometry.jacobian import decoder_jacobian

__all__ = ["decoder_jacobian"]
