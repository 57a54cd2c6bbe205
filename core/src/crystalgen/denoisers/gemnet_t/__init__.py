"""GemNet-T (triplets-only GemNet) on periodic graphs: bases, blocks, the network and its interaction graph.

Used by CDVAE's decoder; method-independent (no latent code, no time embedding: callers build the initial atom
embeddings and scale the vector outputs).
"""

from crystalgen.denoisers.gemnet_t.graph import InteractionGraph, interaction_graph, shared_target_triplets, symmetrize
from crystalgen.denoisers.gemnet_t.network import GemNetT, fit_scale_factors

__all__ = ["GemNetT", "InteractionGraph", "fit_scale_factors", "interaction_graph", "shared_target_triplets", "symmetrize"]
