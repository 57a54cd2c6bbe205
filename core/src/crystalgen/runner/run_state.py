"""What a run directory holds and what it lacks: the state of its sampling and evaluation, and the command that
completes a stage that failed or never ran.

Why: a run killed during evaluation (the kernel's out-of-memory killer, a closed terminal) used to leave a report
with no metrics section and no word saying so. The state comes from the files the stages write (sampling.json,
metrics.json with its ``status``), so a stage completed later by hand counts as complete; ``stages.json``, written by
``crystalgen run`` as each stage starts and ends, adds the reason when a stage failed.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from crystalgen.runner.config import as_dict
from crystalgen.runner.run_dir import RunDir
from crystalgen.runner.sample_dir import SUMMARY

STAGES = ("sampling", "evaluation")
#: where a run's crystal structure prediction scores go, under metrics/
CSP_DIR = "csp"


@dataclass(frozen=True)
class StageState:
    """One stage of a run: ``complete``, ``partial`` (metrics written before the evaluation stopped), ``failed``
    or ``missing``; with the reason and the shell command that completes it when it is not complete."""

    stage: str
    status: str
    reason: str = ""
    command: str = ""

    @property
    def complete(self) -> bool:
        return self.status == "complete"


def record_stage(run: RunDir, stage: str, status: str, reason: str = "", seconds: float | None = None,
                 **extra: Any) -> None:
    """Note in stages.json that ``stage`` is ``running``, ``complete`` or ``failed`` (with the reason, and the wall
    time it took when given)."""
    data = read_stages(run)
    data.update(extra)
    data[stage] = {"status": status, **({"reason": reason} if reason else {}),
                   **({"seconds": round(seconds, 1)} if seconds is not None else {})}
    run.stages.write_text(json.dumps(data, indent=1) + "\n")


def read_stages(run: RunDir) -> dict[str, Any]:
    try:
        return json.loads(run.stages.read_text()) if run.stages.is_file() else {}
    except json.JSONDecodeError:
        return {}


def shell(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def _option_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def sample_argv(run: RunDir, model: str, cfg: DictConfig) -> list[str]:
    """``crystalgen sample`` arguments (without the program name) that sample as ``crystalgen run`` does."""
    s = cfg.sample
    ckpt = run.checkpoints / f"{s.checkpoint}.ckpt"
    if not ckpt.is_file():
        ckpt = run.checkpoints / "last.ckpt"
    from crystalgen.runner.conditions import ConditionSpec

    count = [] if ConditionSpec.from_config(s.get("condition")).decides_count() else ["-n", str(s.num_samples)]
    argv = ["sample", model, "--ckpt", str(ckpt), *count, "--out", str(run.samples),
            "--batch-size", str(s.batch_size), "--seed", str(s.seed), "--device", cfg.trainer.device,
            "--precision", cfg.trainer.precision]
    if s.sampler:
        argv += ["--sampler", s.sampler]
    if s.steps:
        argv += ["--steps", str(s.steps)]
    for key, value in as_dict(s.options).items():
        argv += ["--option", f"{key}={_option_value(value)}"]
    return argv + condition_argv(s.get("condition"))


def condition_argv(section: DictConfig | None) -> list[str]:
    """The ``crystalgen sample`` flags of a run config's ``sample.condition``."""
    from crystalgen.runner.conditions import ConditionSpec

    spec = ConditionSpec.from_config(section)
    argv: list[str] = []
    for kind, value in spec.explicit().items():
        argv += [f"--{kind.replace('_', '-')}", *(str(v) for v in (value if isinstance(value, list) else [value]))]
    if spec.source:
        argv += ["--condition-from", spec.source]
    if spec.take:
        argv += ["--condition-take", ",".join(spec.take)]
    if spec.max_crystals:
        argv += ["--condition-max-crystals", str(spec.max_crystals)]
    if spec.per_condition:
        argv += ["--per-condition", str(spec.per_condition)]
    return argv


def csp_argv(run: RunDir, cfg: DictConfig) -> list[str]:
    """``crystalgen evaluate`` arguments that score the run's samples as structure predictions of the crystals of
    ``sample.condition.from`` (into metrics/csp/)."""
    argv = ["evaluate", str(run.samples), "--task", "csp", "--reference", str(cfg.sample.condition["from"])]
    if cfg.evaluate.workers is not None:
        argv += ["--workers", str(cfg.evaluate.workers)]
    if cfg.get("threads") is not None:
        argv += ["--threads", str(cfg.threads)]
    if cfg.get("memory_gb") is not None:
        argv += ["--memory-gb", str(cfg.memory_gb)]
    oxidation = as_dict(cfg.evaluate.options).get("oxidation_states")
    if oxidation:
        argv += ["--oxidation-states", str(oxidation)]
    return argv + ["--out", str(run.metrics / CSP_DIR)]


def evaluate_argv(run: RunDir, cfg: DictConfig) -> list[str]:
    """``crystalgen evaluate`` arguments (without the program name) that evaluate as ``crystalgen run`` does."""
    e = cfg.evaluate
    argv = ["evaluate", str(run.samples), "--reference", reference(cfg)]
    if e.train_split:
        argv += ["--train", f"{cfg.data.dataset}:{e.train_split}"]
    if e.metrics:
        argv += ["--metrics", ",".join(e.metrics)]
    if e.workers is not None:
        argv += ["--workers", str(e.workers)]
    if cfg.get("threads") is not None:
        argv += ["--threads", str(cfg.threads)]
    if cfg.get("memory_gb") is not None:
        argv += ["--memory-gb", str(cfg.memory_gb)]
    options = as_dict(e.options)
    for key in ("oxidation_states", "n_property_samples", "seed", "symprec", "fingerprint_backend"):
        if key in options:
            argv += [f"--{key.replace('_', '-')}", str(options[key])]
    if "cov_cutoffs" in options:
        cut = options["cov_cutoffs"]
        argv += ["--cov-cutoffs", cut if isinstance(cut, str) else ",".join(str(c) for c in cut)]
    if options.get("paper_protocol"):
        argv.append("--paper-protocol")
    for group, flag in (("predictor_options", "--predictor-option"), ("sun_options", "--sun-option")):
        for key, value in (options.get(group) or {}).items():
            argv += [flag, f"{key}={_option_value(value)}"]
    return argv + ["--out", str(run.metrics)]


def reference(cfg: DictConfig) -> str:
    """The split the run compares its samples with: ``evaluate.reference`` or ``<data.dataset>:test``."""
    return cfg.evaluate.reference or f"{cfg.data.dataset}:test"


def _config(run: RunDir) -> DictConfig | None:
    from crystalgen.runner.config import from_yaml

    return from_yaml(run.config.read_text(), str(run.config)) if run.config.is_file() else None


def _sampling_status(run: RunDir, noted: dict[str, Any]) -> tuple[str, str]:
    summary = run.samples / SUMMARY
    if summary.is_file():
        ok = json.loads(summary.read_text()).get("counts", {}).get("ok", 0)
        if ok:
            return "complete", ""
        return "failed", noted.get("reason") or f"no crystal was decoded (reasons in {run.samples / 'samples.jsonl'})"
    if noted.get("status") == "failed":
        return "failed", noted.get("reason", "")
    if noted.get("status") == "running":
        return "missing", "sampling started but did not finish: the process was stopped or killed (see run.log)"
    return "missing", "the run has no samples (samples/sampling.json)"


def _evaluation_status(run: RunDir, noted: dict[str, Any], sampled: bool) -> tuple[str, str]:
    metrics = run.metrics / "metrics.json"
    status = json.loads(metrics.read_text()).get("status", "complete") if metrics.is_file() else None
    if status == "complete":
        return "complete", ""
    reason = noted.get("reason", "") if noted.get("status") == "failed" else ""
    if not sampled:
        return "missing", "nothing to evaluate: sampling did not complete"
    if status == "partial":
        return "partial", reason or "the evaluation stopped before its last metric (see run.log)"
    if reason:
        return "failed", reason
    if noted.get("status") == "running":
        return "missing", "evaluation started but did not finish: the process was stopped or killed (see run.log)"
    return "missing", "the run has no metrics (metrics/metrics.json)"


def run_states(run_path: str | Path) -> list[StageState]:
    """The state of each stage the run directory is expected to have: both for a ``crystalgen run`` directory
    (stages.json), evaluation only when samples exist, none for a directory of ``crystalgen train`` alone."""
    run = RunDir(Path(run_path))
    noted = read_stages(run)
    cfg = _config(run)
    expected = bool(noted) or (run.samples / SUMMARY).is_file()
    if not expected or cfg is None:
        return []
    sampling, sampling_reason = _sampling_status(run, noted.get("sampling", {}))
    sampled = sampling == "complete"
    evaluation, evaluation_reason = _evaluation_status(run, noted.get("evaluation", {}), sampled)
    if sampled and evaluation == "complete":
        return [StageState("sampling", "complete"), StageState("evaluation", "complete")]
    commands = [shell(["crystalgen", *evaluate_argv(run, cfg)]),
                shell(["crystalgen", "report", str(run.path), "--reference", reference(cfg)])]
    if sampled:
        return [StageState("sampling", "complete"),
                StageState("evaluation", evaluation, evaluation_reason, " && ".join(commands))]
    model = noted.get("model") or _model_of(run) or "MODEL"
    commands.insert(0, shell(["crystalgen", *sample_argv(run, model, cfg)]))
    return [StageState("sampling", sampling, sampling_reason, " && ".join(commands)),
            StageState("evaluation", evaluation, evaluation_reason)]


def finished_stages(run: RunDir) -> set[str]:
    """The stages of ``run`` that an earlier ``crystalgen run`` finished, as a rerun may skip them: ``training``
    when checkpoints/last.ckpt was written when training ended by its own rule (epochs, time budget, early
    stopping; not a signal or an error), ``sampling`` and ``evaluation`` when their files say complete (read as
    :func:`run_states` does)."""
    from crystalgen.runner.checkpoint import CheckpointError, load_checkpoint

    done = set()
    try:
        if load_checkpoint(run.checkpoints / "last.ckpt")["progress"].get("stop_reason"):
            done.add("training")
    except CheckpointError:
        return done
    states = {s.stage: s for s in run_states(run.path)}
    done |= {stage for stage, state in states.items() if state.complete}
    return done


def _model_of(run: RunDir) -> str | None:
    from crystalgen.runner.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(run.checkpoints / "last.ckpt").get("model_name")
    except CheckpointError:
        return None


def incomplete(states: list[StageState]) -> StageState | None:
    """The first stage that is not complete (the one to complete first), or None."""
    return next((s for s in states if not s.complete), None)


def one_line(state: StageState) -> str:
    """What the command line says about an incomplete run, on one line."""
    return f"{state.stage} {state.status}: {state.reason}; complete it with: {state.command}"
