"""SymmCD (Levy et al., ICLR 2025) for crystalgen: diffusion over asymmetric units and site symmetries."""
