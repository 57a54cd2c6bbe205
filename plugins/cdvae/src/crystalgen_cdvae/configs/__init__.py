"""Presets of the CDVAE model (small, paper, paper_carbon_24, paper_mp_20)."""
