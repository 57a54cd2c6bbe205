"""DimeNet++ (Gasteiger et al. 2020) on periodic graphs: the network CDVAE's encoder and its property models share,
and the Gaussian-posterior encoder ``dimenet_pp`` built on it."""

from crystalgen.encoders.dimenet_pp.encoder import GRAPHS, DimeNetPPEncoder, reparameterize
from crystalgen.encoders.dimenet_pp.network import DimeNetPP

__all__ = ["GRAPHS", "DimeNetPP", "DimeNetPPEncoder", "reparameterize"]
