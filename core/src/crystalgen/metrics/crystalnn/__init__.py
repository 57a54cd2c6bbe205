"""A fast, exact CrystalNN "ops" structure fingerprint (matminer's ``CrystalNNFingerprint.from_preset("ops")``).

voronoi.py: the Voronoi faces of each site; weights.py: CrystalNN's coordination-number probabilities;
order_parameters.py: pymatgen's local order parameters for many neighbour sets at once; fingerprint.py: the
per-crystal fingerprint, deferring to matminer for the rare sites whose value the last bits of the input decide.
"""
