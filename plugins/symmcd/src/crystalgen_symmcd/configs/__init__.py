"""SymmCD presets: small.yaml (2 CPU cores, minutes) and paper.yaml (the published settings)."""
