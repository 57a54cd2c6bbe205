"""GemNet-T (triplets-only GemNet) on periodic graphs: bases, blocks, the network and its interaction graph.

The network is method-independent (no latent code, no time embedding: callers build the initial atom embeddings
and scale the vector outputs); the denoiser ``gemnet_t`` (denoiser.py, CDVAE's decoder; optionally conditioned on
the step by GemsDiff's sinusoidal embedding) wraps it.
"""

from crystalgen.denoisers.gemnet_t.denoiser import GemNetTDenoiser
from crystalgen.denoisers.gemnet_t.graph import InteractionGraph, interaction_graph, shared_target_triplets, symmetrize
from crystalgen.denoisers.gemnet_t.network import GemNetT, GemNetTOutput, fit_scale_factors

__all__ = ["GemNetT", "GemNetTOutput", "GemNetTDenoiser", "InteractionGraph", "fit_scale_factors", "interaction_graph",
           "shared_target_triplets", "symmetrize"]
