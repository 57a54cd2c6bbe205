"""Layered run configuration: runner defaults <- model preset <- user YAML <- command-line dotlist.

Each layer may only set keys that a lower layer defines (with a did-you-mean naming the file and key path);
an empty mapping in a lower layer is free-form. ``null`` is always accepted. Plugins own the ``model``
section (their preset defines its keys) and may override any runner default.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

#: Allowed values of the enumerated runner settings (key path -> choices).
CHOICES: dict[str, tuple[str, ...]] = {
    "trainer.optimizer": ("adam", "adamw"),
    "trainer.scheduler.name": ("none", "cosine", "plateau"),
    "trainer.grad_clip_mode": ("norm", "value"),
    "trainer.precision": ("fp32", "bf16"),
    "sample.checkpoint": ("best", "last"),
}
#: Settings that must be positive integers.
POSITIVE = ("data.batch_size", "trainer.max_epochs", "trainer.val_every", "trainer.checkpoint_every",
            "trainer.log_every", "sample.num_samples", "sample.batch_size")
DEVICE = re.compile(r"^(auto|cpu|meta|cuda(:\d+)?)$")
#: Part sections of a model's configuration, ``{name: <registry name>, ...options}``: their options are checked by the
#: part's constructor when the model is assembled (crystalgen.models.assembly), not against the lower layers, and a
#: layer that names another part drops the options of the part it replaces.
PART = re.compile(r"^model\.(transform|encoder|denoiser|decoder|processes\.[^.]+)$")


def benchmark_max_atoms(dataset: str, default: int) -> int:
    """``${benchmark_max_atoms:${data.dataset},N}`` in a preset: the atom cap of a CDVAE benchmark's published
    configs (24 for Carbon-24, 20 for Perov-5 and MP-20), N for any other dataset. Why: heads sized by the atom
    count (CDVAE's number of atoms, SyMat's k and per-element counts) must fit the data trained on; a fixed 20 left
    Carbon-24's 22- and 24-atom cells out of training and out of reach of sampling."""
    from crystalgen.data.benchmarks import BENCHMARKS

    benchmark = BENCHMARKS.get(str(dataset))
    return benchmark.max_atoms if benchmark is not None else int(default)


# OmegaConf 2.4 renamed register_new_resolver (deprecated there) to register_resolver; 2.3 has only the old name.
_register_resolver = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
_register_resolver("benchmark_max_atoms", benchmark_max_atoms, replace=True)


class ConfigError(ValueError):
    """A configuration value or key that the runner cannot use; the message names its source and key path."""


def as_dict(node: Any, resolve: bool = True) -> dict[str, Any]:
    """A config mapping (or a plain mapping, or None) as a plain dict, for code that reads it as keyword options;
    anything else is refused, so that a list where a mapping belongs is not read as one."""
    if node is None:
        return {}
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=resolve)
    if not isinstance(node, Mapping):
        raise ConfigError(f"expected a mapping of options, got {node!r}")
    return {str(k): v for k, v in node.items()}


def runner_defaults() -> DictConfig:
    """The documented defaults (``crystalgen/configs/runner.yaml``)."""
    text = resources.files("crystalgen").joinpath("configs").joinpath("runner.yaml").read_text()
    cfg = OmegaConf.create(text)
    assert isinstance(cfg, DictConfig)
    return cfg


def load_yaml(path: str | Path, user_file: bool = True) -> DictConfig:
    """A YAML mapping from ``path``, with an error naming the file when it is missing or malformed. A user's file
    (``--config``) is read through crystalgen.data.user_files: a regular file within the size limit, never a FIFO
    or /dev/zero; a preset shipped in a plugin (``user_file=False``) is not held to the user's limit."""
    from crystalgen.data.user_files import CONFIG_MAX_FILE_MB, RefusedFileError, read_text

    path = Path(path)
    try:
        text = read_text(path, CONFIG_MAX_FILE_MB) if user_file else path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except RefusedFileError as exc:
        raise ConfigError(f"config file {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        cfg = OmegaConf.create(text)
    except Exception as exc:  # yaml's and OmegaConf's parse errors share no base class
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, found a list")
    return cfg


def parse_overrides(overrides: Sequence[str]) -> DictConfig:
    """``["trainer.max_epochs=5", ...]`` -> config; each item must be ``key=value``."""
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"command-line override {item!r} must look like key.path=value (e.g. trainer.max_epochs=5)")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot parse command-line overrides {list(overrides)}: {exc}") from None


def merge(base: DictConfig, layer: DictConfig, source: str) -> DictConfig:
    """``layer`` over ``base`` after checking that every key of ``layer`` exists in ``base`` (part sections: see
    :data:`PART`)."""
    layer_items = as_dict(layer, resolve=False)
    check_keys(as_dict(base, resolve=False), layer_items, source)
    base = base.copy()
    for path in replaced_parts(base, layer_items):
        OmegaConf.update(base, path, {}, merge=False)
    merged = OmegaConf.merge(base, layer)
    assert isinstance(merged, DictConfig)
    return merged


def replaced_parts(base: DictConfig, layer: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Paths of the part sections to which ``layer`` gives another name than ``base`` has."""
    out = []
    for key, value in layer.items():
        path = f"{prefix}{key}"
        if not isinstance(value, Mapping):
            continue
        if PART.match(path):
            if "name" in value and value["name"] != OmegaConf.select(base, f"{path}.name"):
                out.append(path)
        else:
            out += replaced_parts(base, value, f"{path}.")
    return out


def check_keys(base: Mapping[str, Any], layer: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """Raise ConfigError for the first key of ``layer`` unknown to ``base`` or of an incompatible type."""
    for key, value in layer.items():
        path = f"{prefix}{key}"
        if key not in base:
            valid = sorted(str(k) for k in base)
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
            where = f"under '{prefix[:-1]}'" if prefix else "at the top level"
            raise ConfigError(f"{source}: unknown key '{path}'.{hint} Valid keys {where}: {', '.join(valid)}.")
        expected = base[key]
        if isinstance(expected, Mapping):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: '{path}' must be a mapping of settings, got {value!r}")
            if PART.match(path):  # options are the part's to check, once the model is assembled
                if "name" in value and not isinstance(value["name"], str):
                    raise ConfigError(f"{source}: '{path}.name' must be the name of a registered part, got {value['name']!r}")
            elif expected:  # an empty mapping below is free-form
                check_keys(expected, value, source, prefix=f"{path}.")
        elif not _compatible(expected, value):
            raise ConfigError(f"{source}: '{path}' must be {_kind(expected)}, got {value!r}")


def _compatible(expected: Any, value: Any) -> bool:
    if expected is None or value is None or _is_interpolation(value) or _is_interpolation(expected):
        return True
    if isinstance(expected, bool):
        return isinstance(value, bool)
    if isinstance(expected, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(expected, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(expected, str):
        return isinstance(value, str)
    if isinstance(expected, list):
        return isinstance(value, list)
    return True


def _kind(expected: Any) -> str:
    for typ, name in ((bool, "true or false"), (int, "an integer"), (float, "a number"), (str, "a string"), (list, "a list")):
        if isinstance(expected, typ):
            return name
    return type(expected).__name__


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${")


def compose(presets: Mapping[str, Path], preset: str, *, model_name: str,
            user_files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> DictConfig:
    """The run configuration of a model: runner defaults <- ``presets[preset]`` <- user files <- overrides."""
    if preset not in presets:
        raise ConfigError(f"model {model_name!r} has no preset {preset!r}; presets: {', '.join(sorted(presets)) or 'none'}")
    cfg = runner_defaults()
    cfg = merge(cfg, load_yaml(presets[preset], user_file=False), f"preset {preset!r} of model {model_name!r} ({presets[preset]})")
    cfg.preset = preset
    return apply_user_layers(cfg, user_files, overrides)


def apply_user_layers(cfg: DictConfig, user_files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> DictConfig:
    """User YAML files then command-line overrides over ``cfg`` (also used to amend a saved run config)."""
    for path in user_files:
        cfg = merge(cfg, load_yaml(path), f"config file {path}")
    if overrides:
        cfg = merge(cfg, parse_overrides(overrides), "command-line override")
    validate(cfg)
    return cfg


def validate(cfg: DictConfig) -> None:
    """Check the runner's enumerations, positive integers and device string."""
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve interpolation in the configuration: {exc}") from None
    for path, choices in CHOICES.items():
        value = OmegaConf.select(cfg, path)
        if value not in choices:
            raise ConfigError(f"'{path}' must be one of {', '.join(choices)}, got {value!r}")
    for path in POSITIVE:
        value = OmegaConf.select(cfg, path)
        if not (isinstance(value, int) and value > 0):
            raise ConfigError(f"'{path}' must be a positive integer, got {value!r}")
    device = OmegaConf.select(cfg, "trainer.device")
    if not (isinstance(device, str) and DEVICE.fullmatch(device)):
        raise ConfigError(f"'trainer.device' must be auto, cpu, cuda or cuda:N, got {device!r}")
    threads = cfg.get("threads")
    if not (threads is None or threads == "auto" or (type(threads) is int and threads >= 1)):
        raise ConfigError(f"'threads' must be a positive integer, auto or null (auto), got {threads!r}")
    decay = OmegaConf.select(cfg, "trainer.ema_decay")
    if not 0.0 <= float(decay) < 1.0:
        raise ConfigError(f"'trainer.ema_decay' must be in [0, 1), got {decay!r}")


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def from_yaml(text: str, source: str) -> DictConfig:
    """A config saved by :func:`to_yaml` (in a run directory or a checkpoint)."""
    try:
        cfg = OmegaConf.create(text)
    except Exception as exc:
        raise ConfigError(f"{source}: cannot read the saved configuration: {exc}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{source}: the saved configuration is not a mapping")
    return _upgrade(cfg)


def _upgrade(cfg: DictConfig) -> DictConfig:
    """A configuration saved by an older crystalgen in today's form, so that its runs still resume and report:
    ``trainer.threads`` (training only) became the top-level ``threads`` (every stage); ``sample.condition`` is added
    (unconditioned) where it is missing, so that an override can set it."""
    trainer = cfg.get("trainer")
    if isinstance(trainer, DictConfig) and "threads" in trainer:
        if cfg.get("threads") is None:
            cfg.threads = trainer.threads or None  # 0 meant torch's default
        del trainer["threads"]
    if "threads" not in cfg:
        cfg.threads = None
    sample = cfg.get("sample")
    if isinstance(sample, DictConfig) and "condition" not in sample:
        sample.condition = runner_defaults().sample.condition
    return cfg
