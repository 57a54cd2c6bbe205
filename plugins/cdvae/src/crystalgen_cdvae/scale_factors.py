"""GemNet-T scale factors for CDVAE's decoder: the values CDVAE shipped for exactly the paper's decoder, and the
configuration they hold for."""

from __future__ import annotations

#: Scale factors that CDVAE shipped for exactly the paper's decoder (cdvae/pl_modules/gemnet/gemnet-dT.json at
#: txie-93/cdvae f857f59, "tri_gaussian128": 3 blocks, 128 Gaussian radial functions, widths 128/64/16/16/64).
#: The OutBlock_*_sum factors of that file scale the energy head, which CDVAE discards and we do not build.
PAPER_SCALE_FACTORS: dict[str, float] = {
    "TripInteraction_1_had_rbf": 18.873615264892578, "TripInteraction_1_sum_cbf": 7.996850490570068,
    "AtomUpdate_1_sum": 1.220463752746582, "TripInteraction_2_had_rbf": 16.10817527770996,
    "TripInteraction_2_sum_cbf": 7.614634037017822, "AtomUpdate_2_sum": 0.9690994620323181,
    "TripInteraction_3_had_rbf": 15.01930046081543, "TripInteraction_3_sum_cbf": 7.025179862976074,
    "AtomUpdate_3_sum": 0.8903237581253052, "OutBlock_0_had": 16.161039352416992,
    "OutBlock_1_had": 13.54678726196289, "OutBlock_2_had": 12.754337310791016, "OutBlock_3_had": 13.484951972961426,
}

#: The ``gemnet_t`` options PAPER_SCALE_FACTORS were fitted for.
PAPER_DECODER = {"hidden_dim": 128, "emb_trip": 64, "emb_bilinear": 64, "emb_rbf": 16, "emb_cbf": 16,
                 "num_spherical": 7, "num_radial": 128, "num_blocks": 3, "num_before_skip": 1, "num_after_skip": 2,
                 "num_concat": 1, "num_atom": 3, "cutoff": 7.0}
