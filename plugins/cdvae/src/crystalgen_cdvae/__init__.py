"""CDVAE for crystalgen: periodic VAE with a score-matching decoder (Xie et al., ICLR 2022). See docs/cdvae.md."""
