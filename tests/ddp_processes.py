"""Shared set-up of the DDP tests: a free loopback port and the environment of one spawned torchrun-like rank."""

from __future__ import annotations

import faulthandler
import os
import socket

import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def become_rank(rank: int, world: int, port: int) -> None:
    """Set what torchrun would set for ``rank`` of ``world`` on this machine, with one torch thread."""
    # A stuck collective must fail the test with the stacks, not hang it (seen once on a machine at load 10+).
    faulthandler.dump_traceback_later(300, exit=True)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    if "lo" in {name for _, name in socket.if_nameindex()}:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # the ranks meet on loopback, whatever the hostname says
    torch.set_num_threads(1)
