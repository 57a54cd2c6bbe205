"""Structure and composition fingerprints of CDVAE's coverage metrics (appendix G.2).

- structure: matminer ``CrystalNNFingerprint.from_preset("ops")`` of every site (61 local order parameters
  weighted by CrystalNN coordination), averaged over the sites;
- composition: matminer ``ElementProperty.from_preset("magpie")`` (132 statistics of elemental properties),
  standardised with CDVAE's fixed means and standard deviations, NaN features set to 0.

The featurisers are built once per process (building them imports matminer: ~2 s).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from pymatgen.core import Composition, Structure

from crystalgen.metrics.cdvae_constants import MAGPIE_MEANS, MAGPIE_STDS

STRUCTURE_FP_DIM = 61
COMPOSITION_FP_DIM = 132
#: How the structure fingerprint is computed: "fast" (crystalgen.metrics.crystalnn, vectorised, equal to matminer's
#: to 1e-6 per component; tested on the benchmark test splits) or "matminer" (the reference implementation).
FINGERPRINT_BACKENDS = ("fast", "matminer")
DEFAULT_FINGERPRINT_BACKEND = "fast"


def check_fingerprint_backend(name: str) -> str:
    if name not in FINGERPRINT_BACKENDS:
        raise ValueError(f"unknown fingerprint_backend {name!r}; choose from {', '.join(FINGERPRINT_BACKENDS)}")
    return name


@cache
def featuriser_version(backend: str = DEFAULT_FINGERPRINT_BACKEND) -> str:
    """Names the fingerprint definition, its backend and the libraries that compute it (part of every cache key)."""
    from importlib.metadata import version

    check_fingerprint_backend(backend)
    tag = "" if backend == "matminer" else f";backend={backend}"
    return f"crystalnn-ops+magpie;matminer={version('matminer')};pymatgen={version('pymatgen')}{tag}"


@cache
def _crystalnn():
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    return CrystalNNFingerprint.from_preset("ops")


@cache
def _magpie():
    from matminer.featurizers.composition.composite import ElementProperty

    return ElementProperty.from_preset("magpie")


def structure_fingerprint(structure: Structure) -> np.ndarray:
    """Mean CrystalNN 'ops' site fingerprint, shape (61,). Raises whatever CrystalNN raises on a bad structure."""
    featuriser = _crystalnn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no oxidation states" / radius notices, once per site
        sites = [featuriser.featurize(structure, i) for i in range(len(structure))]
    return np.asarray(sites, dtype=np.float64).mean(axis=0)


def site_fingerprints(structure: Structure, sites: Sequence[int]) -> np.ndarray:
    """matminer's CrystalNN 'ops' fingerprints of some sites, shape (len(sites), 61): the reference for the fast path."""
    featuriser = _crystalnn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return np.asarray([featuriser.featurize(structure, i) for i in sites], dtype=np.float64).reshape(-1, STRUCTURE_FP_DIM)


#: A shell's P(cn) from the fast path and from pymatgen agree to ~1e-13; a larger gap means different shells.
SHELL_AGREEMENT = 1e-9


def shell_order_parameters(structure: Structure, requests: Sequence) -> list[np.ndarray | None]:
    """matminer's values ``P(cn) x order parameter`` of some motifs of some shells (``ShellRequest`` of
    crystalgen.metrics.crystalnn.fingerprint), computed exactly as ``CrystalNNFingerprint.featurize`` does, with
    pymatgen's neighbours in pymatgen's order; None for a request whose P(cn) is not the fast path's."""
    featuriser = _crystalnn()
    shells: dict[int, Any] = {}  # site -> pymatgen's CrystalNN.NNData
    out: list[np.ndarray | None] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for request in requests:
            if request.site not in shells:
                shells[request.site] = featuriser.cnn.get_nn_data(structure, request.site)
            nndata = shells[request.site]
            weight = nndata.cn_weights.get(request.cn, 0)
            if abs(weight - request.probability) > SHELL_AGREEMENT:
                out.append(None)
                continue
            neighbours = [d["site"] for d in nndata.cn_nninfo[request.cn]]
            values = []
            for k in request.motifs:
                op = featuriser.ops[request.cn][k + 1]  # ops[cn][0] is "wt", then the motifs in the layout's order
                value = op.get_order_parameters([structure[request.site], *neighbours], 0,
                                                indices_neighs=list(range(1, len(neighbours) + 1)))[0]
                values.append(weight * (value or 0))
            out.append(np.asarray(values, dtype=np.float64))
    return out


def composition_fingerprint(composition: Composition) -> np.ndarray:
    """Raw Magpie composition fingerprint, shape (132,); NaN where an element lacks a property."""
    return np.asarray(_magpie().featurize(composition), dtype=np.float64)


def standardise_composition_fingerprints(raw: np.ndarray) -> np.ndarray:
    """(x - mean) / std with CDVAE's constants; NaN -> 0 (CDVAE's ``CompScaler``, replace_nan_token=0)."""
    scaled = (np.asarray(raw, dtype=np.float64) - np.asarray(MAGPIE_MEANS)) / np.asarray(MAGPIE_STDS)
    return np.where(np.isnan(scaled), 0.0, scaled)
