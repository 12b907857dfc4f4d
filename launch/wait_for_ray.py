#!/usr/bin/env python
"""Wait until a Ray cluster has the expected nodes (and custom resources), or fail with what is missing.

Used by launch/slurm.sbatch between starting the Ray processes and starting the run, so a node that never
joins becomes a clear error after ``--timeout`` seconds instead of a run whose actors stay pending forever
(Ray queues an unsatisfiable actor without error; research/vllm_ray.md §5).

    python launch/wait_for_ray.py --address 10.0.0.1:6379 --nodes 4 --resources '{"rollout_node": 3}' --timeout 600

Exit status 0 when the cluster is ready, 1 on timeout (the last state seen is printed). Run it under
``timeout`` as well: once the head's port answers, ``ray.init`` itself has no deadline.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

#: Seconds between two looks at the cluster (each is one GCS query; cheap).
POLL_S = 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--address", required=True, help="GCS address of the head, HOST:PORT")
    p.add_argument("--nodes", type=int, default=1, help="alive nodes to wait for (default 1)")
    p.add_argument("--resources", type=json.loads, default={}, help='JSON totals to wait for, e.g. {"GPU": 16}')
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up (default 600)")
    return p.parse_args(argv)


def missing(nodes_alive: int, resources: dict[str, float], want_nodes: int, want: dict[str, float]) -> list[str]:
    """What the cluster still lacks (empty when ready)."""
    out = [f"{nodes_alive}/{want_nodes} nodes alive"] if nodes_alive < want_nodes else []
    out += [f"{k}: {resources.get(k, 0.0):g}/{v:g}" for k, v in want.items() if resources.get(k, 0.0) < v]
    return out


def connect(address: str, deadline: float) -> None:
    """Connect as a driver once the head's GCS port accepts connections.

    The port is probed first because ``ray.init`` against an address where nothing listens retries forever,
    whatever the timeout asked for here.
    """
    import ray

    host, _, port = address.rpartition(":")
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=POLL_S).close()
            break
        except OSError as e:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Ray head listens at {address}: {e}") from e
            time.sleep(POLL_S)
    ray.init(address=address, logging_level="ERROR", log_to_driver=False, include_dashboard=False)


def wait(args: argparse.Namespace) -> int:
    import ray

    deadline = time.monotonic() + args.timeout
    try:
        connect(args.address, deadline)
    except TimeoutError as e:
        print(f"wait_for_ray: {e}", file=sys.stderr)
        return 1
    try:
        while True:
            alive = sum(1 for n in ray.nodes() if n["Alive"])
            lack = missing(alive, ray.cluster_resources(), args.nodes, args.resources)
            if not lack:
                print(f"wait_for_ray: ready: {alive} nodes, {ray.cluster_resources()}", flush=True)
                return 0
            if time.monotonic() > deadline:
                print(f"wait_for_ray: timed out after {args.timeout:g} s; missing: {'; '.join(lack)}", file=sys.stderr)
                return 1
            time.sleep(POLL_S)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(wait(parse_args()))
