"""CPU per upload of the ingest request path, two code trees side by side: ingest, PostgreSQL and Kafka.

One private stack (`respmon/testing/privatestack.py`, never the dev stack), one database and topic
prefix per tree, both `respmon ingest` processes running at once; batches of uploads (an O2Ring CSV
night of 7,200 rows ~220 kB + an NIV CSV row, a new patient and device each, as in `bench/e2e.py`)
go to one tree then the other, alternately, and each batch's CPU is read from /proc (ingest
process, every PostgreSQL process, the broker). Alternating batches in one run keeps the noise of a
busy machine out of the ratio; the medians are reported. No worker runs: this is ingest's share.

To compare a change, snapshot both trees at the same moment so that they differ only in it, e.g.:

    rsync -a --exclude .venv --exclude .stack --exclude .git ./ /tmp/ingest-new/
    rsync -a --exclude .venv --exclude .stack --exclude .git ./ /tmp/ingest-old/
    git show HEAD:ingest/uploads.py > /tmp/ingest-old/ingest/uploads.py   # ... each changed file

Usage: python bench/ingest_path.py --old /tmp/ingest-old --new /tmp/ingest-new [--batch 40] [--rounds 5]
Prints JSON; writes bench/results/ingest_path.json with --save.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result
from e2e import CpuMeter, Env, _o2ring_nights, drive, provision, service

from respmon.testing.privatestack import PrivateStack


def _topic_bytes(stack: PrivateStack, prefix: str) -> int:
    """Bytes on the broker's disk of the measurements topic (all partitions, log segments only)."""
    data = stack.dir / "kafka" / "data"
    return sum(f.stat().st_size for d in data.glob(f"{prefix}.measurements-*") for f in d.glob("*.log"))


def run(old: Path, new: Path, batch: int, rounds: int, clients: int, warm: int) -> dict[str, Any]:
    logs = Path("/tmp") / f"respmon-ingest-path-{uuid.uuid4().hex[:6]}"
    logs.mkdir(parents=True)
    trees = {"old": old, "new": new}
    per_tree = warm + batch * rounds
    nights = _o2ring_nights(24, seed=11)
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    with PrivateStack() as stack:
        envs = {k: Env(stack, f"ip{k}", code, logs) for k, code in trees.items()}
        patients: dict[str, list[str]] = {}
        tokens: dict[str, dict[str, str]] = {}
        for k, env in envs.items():
            env.prepare()
            patients[k] = [f"IP{k}{i:05d}" for i in range(per_tree)]
            tokens[k] = provision(env.url, patients[k])
        with service(envs["old"], "ingest", "RESPMON_INGEST_PORT", "old-ingest.log") as (p_old, u_old), \
             service(envs["new"], "ingest", "RESPMON_INGEST_PORT", "new-ingest.log") as (p_new, u_new):
            procs = {"old": (p_old.pid, u_old), "new": (p_new.pid, u_new)}
            times: dict[str, list[float]] = {"o2ring_csv": [], "niv_csv": []}
            for k, (_, url) in procs.items():
                drive(url, tokens[k], patients[k], nights, range(warm), clients, times)
            for r in range(rounds):
                order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
                for k in order:
                    pid, url = procs[k]
                    meter = CpuMeter(stack, {"ingest": pid})
                    meter.start()
                    lo = warm + r * batch
                    drive(url, tokens[k], patients[k], nights, range(lo, lo + batch), clients, times)
                    samples[k].append(meter.stop(batch)["cpu_ms_per_upload"])
        disk = {k: round(_topic_bytes(stack, f"bench-ip{k}") / per_tree) for k in trees}
    result: dict[str, Any] = {"batch": batch, "rounds": rounds, "http_clients": clients, "old": str(old),
                              "new": str(new), "service_logs": str(logs)}
    for k in trees:
        result[k] = {name: round(statistics.median(s[name] for s in samples[k]), 2)
                     for name in ("ingest", "postgresql", "kafka")}
        result[k]["total"] = round(sum(result[k].values()), 2)
        result[k]["topic_bytes_per_upload"] = disk[k]
        result[k]["per_round"] = samples[k]
    result["saved_ms_per_upload"] = {name: round(result["old"][name] - result["new"][name], 2)
                                     for name in ("ingest", "postgresql", "kafka", "total")}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, required=True, help="tree of the code before the change")
    ap.add_argument("--new", type=Path, required=True, help="tree of the code after the change")
    ap.add_argument("--batch", type=int, default=40, help="uploads per measured batch")
    ap.add_argument("--rounds", type=int, default=5, help="batches per tree, alternating")
    ap.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    ap.add_argument("--warm", type=int, default=10, help="uploads per tree before measuring")
    ap.add_argument("--save", action="store_true", help="write bench/results/ingest_path.json")
    args = ap.parse_args()
    result = run(args.old.resolve(), args.new.resolve(), args.batch, args.rounds, args.clients, args.warm)
    print(json.dumps({k: v for k, v in result.items()}, indent=2, default=str))
    if args.save:
        write_result("ingest_path", result)


if __name__ == "__main__":
    main()
