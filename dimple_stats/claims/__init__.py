"""The claim catalogue: every falsifiable statement dimple-stats can test, by id."""

from dimple_stats.claims.catalogue import CATALOGUE, ClaimDefinition, get_claim, list_claims

__all__ = ["CATALOGUE", "ClaimDefinition", "get_claim", "list_claims"]
