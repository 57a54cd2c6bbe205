"""Models and samplers by name: building from a config, restoring from a checkpoint."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from crystalgen import plugins
from crystalgen.models.base import GenerativeModel
from crystalgen.runner.checkpoint import CheckpointError, load_checkpoint
from crystalgen.runner.config import ConfigError, as_dict, from_yaml, merge, parse_overrides
from crystalgen.samplers.base import Sampler


def model_class(name: str) -> type[GenerativeModel]:
    """The installed model recipe ``name`` (UnknownComponentError lists the installed ones)."""
    return plugins.get("model", name)


@dataclass
class TrainedModel:
    """A model restored from a checkpoint, with the configuration it was trained with."""

    model: GenerativeModel
    name: str
    config: DictConfig
    checkpoint: Path
    payload: dict[str, Any]


def saved_config(payload: Mapping[str, Any], source: str) -> DictConfig:
    """The configuration a checkpoint was written with, its ``model`` section upgraded to the shape the installed
    model reads (GenerativeModel.upgrade_config), so that overrides and the model meet today's keys."""
    cfg = from_yaml(payload["config"], source)
    cfg.model = model_class(payload.get("model_name") or "").upgrade_config(cfg.model)
    return cfg


def load_trained(path: str | Path, device: torch.device | str = "cpu", averaged: bool = True,
                 model_overrides: Sequence[str] = (), expected_model: str | None = None,
                 check: Callable[[DictConfig], None] | None = None) -> TrainedModel:
    """Rebuild the model of checkpoint ``path`` (the averaged EMA weights when present and ``averaged``).

    ``model_overrides`` (``["decoder.trials=6"]``) amend the checkpoint's ``model`` configuration (upgraded to
    today's shape first, :func:`saved_config`) before the model is built: settings that leave the weights as they are, such as a decoder's search budget, can then be
    chosen per run. A key the configuration lacks is refused; one that changes the architecture fails to load.
    ``expected_model`` refuses a checkpoint of another model before anything is built; ``check`` (e.g. a request
    above the trained size limit, runner.size_limit) receives the saved configuration before the model is built.
    """
    path = Path(path)
    payload = load_checkpoint(path, expected_model=expected_model)
    name = payload.get("model_name") or ""
    cfg = saved_config(payload, str(path))
    if model_overrides:
        cfg.model = merge(cfg.model, parse_overrides(model_overrides), f"--model-option for checkpoint {path}")
    if check is not None:
        check(cfg)
    model = model_class(name).from_config(cfg.model)
    try:
        model.load_state_dict(payload["model"])
        if averaged and payload.get("ema"):
            model.load_state_dict(payload["ema"], strict=False)  # parameters and buffers only
    except RuntimeError as exc:
        raise CheckpointError(
            path, f"does not fit model {name!r} as installed now ({str(exc).splitlines()[0]})",
            "was it written by another version of its plugin, or with a --model-option that changes the architecture?"
        ) from None
    model.to(device).eval()
    return TrainedModel(model, name, cfg, path, payload)


def build_sampler(model: GenerativeModel, name: str | None, steps: int | None,
                  options: Mapping[str, Any] | None = None) -> Sampler:
    """The sampler ``name`` (default: the model's), checked against the model's processes before any sampling."""
    name = name or model.default_sampler
    registry = plugins.default_host().registry("sampler")
    cls = registry.get(name)
    cls.check(model.processes, available=dict(registry.items()))
    options = as_dict(options)
    try:
        return cls(steps=steps, **options)
    except TypeError as exc:
        raise ConfigError(f"sampler {name!r} does not accept options {sorted(options)}: {exc}") from None


def split_options(model: GenerativeModel, sampler: str, options: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(sampler options, request options) of ``sample --option``: a key the model declares in ``request_options``
    (SymmCD's ``spacegroup_prior``) that sampler ``sampler``'s constructor does not take goes to the model's
    SampleRequest; every other key stays a sampler option (and an unknown one is refused by build_sampler)."""
    cls = plugins.default_host().registry("sampler").get(sampler)
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    to_model = {k for k in (options or {}) if k in model.request_options and not takes_any and k not in params}
    return ({k: v for k, v in (options or {}).items() if k not in to_model},
            {k: v for k, v in (options or {}).items() if k in to_model})


def checkpoint_sampler_name(trained: TrainedModel, name: str | None = None) -> str:
    """``name``, else the sampler the checkpoint's run configured under ``sample``, else the model's default."""
    saved = trained.config.get("sample") or {}
    return name or saved.get("sampler") or trained.model.default_sampler


def checkpoint_sampler(trained: TrainedModel, name: str | None = None, steps: int | None = None,
                       options: Mapping[str, Any] | None = None) -> Sampler:
    """The sampler for a checkpoint: the one its run configured under ``sample`` (e.g. the small CDVAE preset's 250
    Langevin steps rather than the paper's 5,000), with the caller's steps and options on top. Steps and options
    saved for one sampler are not carried over when the caller picks another."""
    saved = trained.config.get("sample") or {}
    saved_name = checkpoint_sampler_name(trained)
    chosen = checkpoint_sampler_name(trained, name)
    if chosen == saved_name:
        saved_options = as_dict(saved.get("options"))
        steps = steps if steps is not None else saved.get("steps")
        options = {**saved_options, **(options or {})}
    return build_sampler(trained.model, chosen, steps, options)
