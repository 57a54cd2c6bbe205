"""Gradient-based reconstruction of atomic positions from R_str by basin hopping (paper Algorithm 2, appendix A.3.5).

Given the target R_str of a crystal, its atoms (types) and its cell, random Cartesian positions are optimised with
Adam on the L1 distance between their R_str and the target; each trial does ``hops`` rounds of ``iterations`` Adam
steps, every new round starting from the trial's best positions so far displaced by U(-hop_step, hop_step) Angstrom
per Cartesian coordinate (the paper's "basin hopping step size is a random number in [-1, 1]"), with a fresh Adam
state; the lowest loss over all trials and hops wins. The paper's settings are 6 trials x 7 hops x 300 iterations.

Everything is batched: all trials of all crystals of a group are one set of "systems" evaluated by one descriptor
call per step (one pair list, one matrix product), so a CPU's BLAS threads or a GPU stay busy. Groups are formed so
that the pair list stays within ``max_pairs``. With ``loss_threshold`` set, a crystal stops as soon as one of its
trials gets below it (checked every ``check_every`` steps) and leaves the batch, which is where most of the time
goes otherwise (docs/structrepdiff.md, "Reconstruction speed").

The loss is the L1 distance averaged over the 2 N_e + 1 features of R_str, by default unweighted (the paper's plain
L1; ``loss_weighting: none``), or weighted per feature by the spread of the training data (``spread``:
1 / (std + floor x block mean std) for EAD features, d_min_weight / std for d_min). It is divided by the mean
(weighted) |R_str| of the crystal's target, which leaves the search unchanged (Adam does not see a constant factor)
but makes losses, and so ``loss_threshold``, comparable between crystals whose densities differ by orders of
magnitude with their atomic numbers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from crystalgen_structrepdiff.descriptor import StructureDescriptor
from crystalgen_structrepdiff.pairs import PairList, build_pairs, lengths

log = logging.getLogger("crystalgen.structrepdiff")

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class BasinHopping:
    """Settings of the reconstruction (defaults: the paper's trials, hops, iterations and hop step, appendix A.3.5;
    the learning rates, which the paper does not give, are the presets' tuned values).

    Attributes:
        trials: independent random starts per crystal (paper 6).
        hops: basin hops per trial (paper 7).
        iterations: Adam steps per hop (paper 300).
        lr: Adam learning rate in Angstrom at the start of each hop (not given in the paper).
        lr_final: learning rate at the end of each hop, reached by a cosine decay (None: constant ``lr``).
        hop_step: hops displace every Cartesian coordinate by U(-hop_step, hop_step) Angstrom (paper 1).
        relocate_atoms: a hop also moves this many randomly chosen atoms of each trial to uniformly random points of
            the cell (addition, 0 = the paper's hops). A minimum with one atom on a wrong site is flat under the
            max/min pooling, and a +-1 A jitter of every atom rarely leaves it (docs/structrepdiff.md).
        relocate_closer_than: a hop also moves one atom of every pair closer than this fraction of the target's
            d_min to a uniformly random point of the cell (addition, 0 = off). Two atoms on one point are a trap of
            the L1 loss: the Gaussians centred above r = 0 grow with r, so separating a close pair first adds
            short-distance density that the target lacks (docs/structrepdiff.md, "Overlapping atoms").
        loss_threshold: stop a crystal once its best relative loss is below this (None: never, as the paper).
        d_min_penalty: adds d_min_penalty x max(0, target d_min - d_min) / target d_min to the relative loss, a
            one-sided push against atoms closer than the target allows (addition; 0 = the paper's L1, in which d_min
            is one feature among thousands of far larger EAD values and atoms can end on top of each other).
        check_every: steps between early-exit checks.
        skin: the pair list covers cutoff + skin and is rebuilt once an atom has moved skin / 2 (Angstrom).
        max_pairs: pairs per batch of crystals (bounds memory; about 470 bytes per pair, memory.BYTES_PER_PAIR).
    """

    trials: int = 6
    hops: int = 7
    iterations: int = 300
    lr: float = 0.3
    lr_final: float | None = 0.005
    hop_step: float = 1.0
    relocate_atoms: int = 0
    relocate_closer_than: float = 0.0
    loss_threshold: float | None = None
    d_min_penalty: float = 0.0
    check_every: int = 10
    skin: float = 1.0
    max_pairs: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("trials", "hops", "iterations", "check_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"basin hopping {name} must be >= 1, got {getattr(self, name)}")
        non_negative = {"hop_step": self.hop_step, "skin": self.skin, "relocate_atoms": self.relocate_atoms,
                        "relocate_closer_than": self.relocate_closer_than, "d_min_penalty": self.d_min_penalty}
        if self.lr <= 0 or min(non_negative.values()) < 0:
            raise ValueError(f"basin hopping needs lr > 0 and {', '.join(non_negative)} >= 0, got lr {self.lr}, "
                             + ", ".join(f"{k} {v}" for k, v in non_negative.items()))


@dataclass
class Reconstruction:
    """Best positions per crystal (Cartesian, Angstrom), their relative loss, and the Adam steps spent (summed over
    trials)."""

    positions: list[Tensor]
    loss: Tensor
    steps: Tensor
    seconds: float


class _Systems:
    """The trials of a group of crystals as flat tensors: system s = crystal * trials + trial, atoms in system order."""

    def __init__(self, atomic_numbers: Tensor, num_atoms: Tensor, lattice: Tensor, trials: int) -> None:
        device = lattice.device
        self.trials = trials
        self.num_crystals = num_atoms.numel()
        self.crystal = torch.arange(self.num_crystals, device=device).repeat_interleave(trials)  # (S,)
        self.num_atoms = num_atoms.repeat_interleave(trials)
        self.lattice = lattice.repeat_interleave(trials, dim=0)
        first = torch.cumsum(num_atoms, 0) - num_atoms
        system_first = first.repeat_interleave(trials)
        self.system = torch.repeat_interleave(torch.arange(self.crystal.numel(), device=device), self.num_atoms)
        rank = torch.arange(self.system.numel(), device=device) - (torch.cumsum(self.num_atoms, 0) - self.num_atoms).index_select(0, self.system)
        self.source_atom = system_first.index_select(0, self.system) + rank  # the crystal's atom each row copies
        self.atomic_numbers = atomic_numbers.index_select(0, self.source_atom)

    def atoms_of(self, systems: Tensor) -> Tensor:
        """Atom indices of ``systems`` in order."""
        return torch.isin(self.system, systems).nonzero().squeeze(1)


class Reconstructor:
    """Batched basin hopping on R_str.

    Args:
        descriptor: computes R_str (use float32 for speed; the targets are compared in that precision).
        settings: trials, hops, iterations, ...
        weights: (2 N_e + 1,) per-feature weights of the L1 loss (ones for the paper's plain L1).
    """

    def __init__(self, descriptor: StructureDescriptor, settings: BasinHopping, weights: Tensor) -> None:
        if weights.shape != (descriptor.size,):
            raise ValueError(f"reconstruction weights must have shape ({descriptor.size},), got {tuple(weights.shape)}")
        self.descriptor = descriptor
        self.settings = settings
        self.weights = weights

    def __call__(self, target: Tensor, atomic_numbers: Tensor, num_atoms: Tensor, lattice: Tensor, *,
                 generator: torch.Generator | None = None, start: Tensor | None = None,
                 progress: Callable[[int], None] | None = None) -> Reconstruction:
        """Reconstruct B crystals.

        Args:
            target: (B, 2 N_e + 1) raw R_str to match.
            atomic_numbers: (N,) Z of every atom, crystals concatenated.
            num_atoms: (B,) atoms per crystal.
            lattice: (B, 3, 3) cells, rows are lattice vectors, Angstrom.
            start: (N, 3) Cartesian positions every trial starts from (default: uniform in the cell).
            progress: called with the number of crystals finished after each group.
        """
        started = time.perf_counter()
        device = lattice.device
        dtype = self.descriptor.dtype
        positions: list[Tensor] = [torch.empty(0)] * num_atoms.numel()
        loss = torch.full((num_atoms.numel(),), math.inf, dtype=torch.float64)
        steps = torch.zeros(num_atoms.numel(), dtype=torch.long)
        first = (torch.cumsum(num_atoms, 0) - num_atoms).tolist()
        for group in self._groups(num_atoms, lattice):
            atoms = torch.cat([torch.arange(first[b], first[b] + int(num_atoms[b]), device=device) for b in group])
            index = torch.tensor(group, device=device)
            best, best_loss, spent = self._hop(target.index_select(0, index).to(device, dtype), atomic_numbers.index_select(0, atoms),
                                               num_atoms.index_select(0, index), lattice.index_select(0, index).to(dtype), generator,
                                               None if start is None else start.index_select(0, atoms).to(device, dtype))
            offsets = (torch.cumsum(num_atoms.index_select(0, index), 0) - num_atoms.index_select(0, index)).tolist()
            for k, b in enumerate(group):
                positions[b] = best[offsets[k]:offsets[k] + int(num_atoms[b])].detach().double().cpu()
            loss[group] = best_loss.double().cpu()
            steps[group] = spent.cpu()
            if progress is not None:
                progress(len(group))
        return Reconstruction(positions, loss, steps, time.perf_counter() - started)

    def pair_estimate(self, num_atoms: Tensor, lattice: Tensor) -> Tensor:
        """(B,) pairs each crystal's trials hold on average: (n^2 / V * 4/3 pi (r_c + skin)^3 + n) * trials, on the CPU."""
        radius = self.descriptor.params.cutoff + self.settings.skin
        volume = torch.linalg.det(lattice.double()).abs().cpu()
        n = num_atoms.double().cpu()
        return (n**2 / volume * (4 / 3) * math.pi * radius**3 + n) * self.settings.trials

    def _groups(self, num_atoms: Tensor, lattice: Tensor) -> list[list[int]]:
        """Consecutive crystals whose :meth:`pair_estimate` fits max_pairs."""
        cost = self.pair_estimate(num_atoms, lattice)
        groups: list[list[int]] = [[]]
        total = 0.0
        for b, c in enumerate(cost.tolist()):
            if groups[-1] and total + c > self.settings.max_pairs:
                groups.append([])
                total = 0.0
            groups[-1].append(b)
            total += c
        return groups

    def _loss(self, positions: Tensor, systems: _Systems, atoms: Tensor, active: Tensor, target: Tensor, scale: Tensor,
              pairs: PairList) -> Tensor:
        """Per-system relative L1 loss (S_active,) of the active systems' positions (see the module docstring)."""
        R = self.descriptor(positions, systems.atomic_numbers.index_select(0, atoms), systems.num_atoms.index_select(0, active), pairs)
        crystal = systems.crystal.index_select(0, active)
        goal = target.index_select(0, crystal)
        loss = ((R - goal).abs() * self.weights.to(R)).mean(dim=1) / scale.index_select(0, crystal)
        if self.settings.d_min_penalty:
            closer = (goal[:, -1] - R[:, -1]).clamp_min(0.0)
            loss = loss + self.settings.d_min_penalty * closer / goal[:, -1].clamp_min(1e-3)
        return loss

    def _hop(self, target: Tensor, atomic_numbers: Tensor, num_atoms: Tensor, lattice: Tensor,
             generator: torch.Generator | None, start: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Basin hopping for one group; returns (best positions (N, 3), best loss (B,), steps (B,))."""
        s = self.settings
        device, dtype = lattice.device, lattice.dtype
        systems = _Systems(atomic_numbers, num_atoms, lattice, s.trials)
        S = systems.crystal.numel()
        scale = (target.abs() * self.weights.to(target)).mean(dim=1).clamp_min(torch.finfo(dtype).tiny)
        if start is None:
            frac = torch.rand(systems.system.numel(), 3, generator=generator, device=device, dtype=dtype)
            positions = torch.bmm(frac.unsqueeze(1), systems.lattice.index_select(0, systems.system)).squeeze(1)
        else:
            positions = start.index_select(0, systems.source_atom)
        best_positions = positions.clone()
        best_loss = torch.full((S,), math.inf, device=device, dtype=dtype)
        steps = torch.zeros(S, dtype=torch.long, device=device)
        done = torch.zeros(systems.num_crystals, dtype=torch.bool, device=device)
        for hop in range(s.hops):
            if hop > 0:
                jump = (2 * torch.rand(positions.shape, generator=generator, device=device, dtype=dtype) - 1) * s.hop_step
                positions = best_positions + jump
                if s.relocate_atoms:
                    positions = _relocate(positions, systems, s.relocate_atoms, generator)
                if s.relocate_closer_than:
                    crowded = _crowded_atoms(best_positions, systems, s.relocate_closer_than * target[:, -1])
                    positions = _move_to_random_points(positions, crowded, systems, generator)
            first_moment = torch.zeros_like(positions)
            second_moment = torch.zeros_like(positions)
            step = 0
            while step < s.iterations and not bool(done.all()):
                active = (~done).index_select(0, systems.crystal).nonzero().squeeze(1)
                atoms = systems.atoms_of(active)
                x = positions.index_select(0, atoms)
                m, v = first_moment.index_select(0, atoms), second_moment.index_select(0, atoms)
                pairs = self.descriptor.pairs(x, systems.lattice.index_select(0, active), systems.num_atoms.index_select(0, active), s.skin)
                segment_end = min(s.iterations, step + s.check_every) if s.loss_threshold is not None else s.iterations
                while step < segment_end:
                    x = x.detach().requires_grad_(True)
                    with torch.enable_grad():
                        loss = self._loss(x, systems, atoms, active, target, scale, pairs)
                        (grad,) = torch.autograd.grad(loss.sum(), x)
                    loss = loss.detach()
                    self._keep_best(loss, x.detach(), active, atoms, systems, best_loss, best_positions)
                    step += 1
                    steps.index_add_(0, active, torch.ones_like(active))
                    x, m, v = _adam(x.detach(), torch.nan_to_num(grad), m, v, step, self._learning_rate(step))
                    if step < segment_end and not pairs.still_complete(x, self.descriptor.params.cutoff):
                        pairs = self.descriptor.pairs(x, systems.lattice.index_select(0, active), systems.num_atoms.index_select(0, active), s.skin)
                positions[atoms], first_moment[atoms], second_moment[atoms] = x, m, v
                if s.loss_threshold is not None:
                    crystal_best = best_loss.view(-1, s.trials).amin(dim=1)
                    done |= crystal_best < s.loss_threshold
            if bool(done.all()):
                break
        crystal_loss, winner = best_loss.view(-1, s.trials).min(dim=1)
        chosen = torch.arange(systems.num_crystals, device=device) * s.trials + winner
        return best_positions.index_select(0, systems.atoms_of(chosen)), crystal_loss, steps.view(-1, s.trials).sum(dim=1)

    def _learning_rate(self, step: int) -> float:
        """Cosine decay from lr to lr_final over a hop's iterations (constant lr when lr_final is None)."""
        s = self.settings
        if s.lr_final is None:
            return s.lr
        return s.lr_final + 0.5 * (s.lr - s.lr_final) * (1 + math.cos(math.pi * (step - 1) / max(s.iterations - 1, 1)))

    @staticmethod
    def _keep_best(loss: Tensor, x: Tensor, active: Tensor, atoms: Tensor, systems: _Systems, best_loss: Tensor,
                   best_positions: Tensor) -> None:
        """Record the positions of every active system whose loss improved (in place)."""
        improved = loss < best_loss.index_select(0, active)
        if not bool(improved.any()):
            return
        best_loss.index_copy_(0, active[improved], loss[improved])
        local_system = torch.repeat_interleave(torch.arange(active.numel(), device=active.device), systems.num_atoms.index_select(0, active))
        moved = improved.index_select(0, local_system)
        best_positions.index_copy_(0, atoms[moved], x[moved])


def _relocate(positions: Tensor, systems: _Systems, count: int, generator: torch.Generator | None) -> Tensor:
    """``positions`` with ``count`` random atoms of every system (all of a smaller one) moved to uniformly random
    points of its cell."""
    device = positions.device
    score = torch.rand(positions.shape[0], generator=generator, device=device, dtype=torch.float64)
    order = torch.argsort(systems.system.double() + score)  # atoms grouped by system, random order within each
    first = torch.cumsum(systems.num_atoms, 0) - systems.num_atoms
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=device) - first.index_select(0, systems.system.index_select(0, order))
    return _move_to_random_points(positions, (rank < count).nonzero().squeeze(1), systems, generator)


def _crowded_atoms(positions: Tensor, systems: _Systems, limit: Tensor) -> Tensor:
    """One atom (the later one) of every pair of atoms closer than its crystal's ``limit`` (B,), Angstrom."""
    per_system = limit.index_select(0, systems.crystal)
    radius = float(per_system.max()) if per_system.numel() else 0.0
    if radius <= 0:
        return torch.empty(0, dtype=torch.long, device=positions.device)
    pairs = build_pairs(positions, systems.lattice, systems.num_atoms, radius)
    distance = lengths(pairs.vectors(positions.detach()))
    close = (distance < per_system.index_select(0, systems.system.index_select(0, pairs.centre))) & (pairs.centre != pairs.neighbour)
    return torch.unique(torch.maximum(pairs.centre[close], pairs.neighbour[close]))


def _move_to_random_points(positions: Tensor, atoms: Tensor, systems: _Systems, generator: torch.Generator | None) -> Tensor:
    """``positions`` with ``atoms`` moved to uniformly random points of their own cells."""
    frac = torch.rand(atoms.numel(), 3, generator=generator, device=positions.device, dtype=positions.dtype)
    cells = systems.lattice.index_select(0, systems.system.index_select(0, atoms))
    moved = positions.clone()
    moved[atoms] = torch.bmm(frac.unsqueeze(1), cells).squeeze(1)
    return moved


#: How the L1 loss weighs the features of R_str: by their spread over the training data (``loss_weights``), or
#: not at all (the paper's plain L1 over the raw descriptor).
LOSS_WEIGHTINGS = ("spread", "none")


def loss_weights(std: Tensor, num_mu: int, floor: float, d_min_weight: float) -> Tensor:
    """Weights of the L1 loss over R_str from the training std (2 N_e + 1,) of its features.

    EAD feature k: 1 / (std_k + floor * mean std of its block), a block being the num_mu features of one
    (pool, l, eta). Features that hardly vary over the data (Gaussians centred below the shortest bond, or past the
    cutoff's damping) would otherwise get weights up to 1e8 and turn every near contact into a cliff; a large floor
    weighs each block uniformly, like the raw descriptor within it (docs/structrepdiff.md, "Reconstruction loss").
    d_min: d_min_weight / std; with d_min_weight ~ num_mu it counts as much as a whole block, which keeps atoms
    from piling up (as one feature among 2 N_e + 1 it is easily outvoted).
    """
    ead, d_min = std[:-1].double(), std[-1:].double()
    blocks = ead.view(-1, num_mu)
    scale = blocks + floor * blocks.mean(dim=1, keepdim=True)
    return torch.cat([1.0 / scale.reshape(-1), d_min_weight / d_min])


def _adam(x: Tensor, grad: Tensor, m: Tensor, v: Tensor, step: int, lr: float) -> tuple[Tensor, Tensor, Tensor]:
    """One Adam step (Kingma & Ba 2015, Algorithm 1) on independent coordinates; returns (x, m, v)."""
    b1, b2 = ADAM_BETAS
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    m_hat = m / (1 - b1**step)
    v_hat = v / (1 - b2**step)
    return x - lr * m_hat / (v_hat.sqrt() + ADAM_EPS), m, v
