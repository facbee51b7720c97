"""Run every benchmark and write bench/results/*.json (summarised in the README, section "Benchmarks").

    .venv/bin/python bench/run_all.py            # full run, ~8-10 min on 2 cores
    .venv/bin/python bench/run_all.py --quick    # smoke run, ~2 min

1. oximetry_metrics  night_metrics vs pobm 1.2 ODI3 on the same 8 h 1 Hz nights (bench/.venv-pobm)
2. parsing           ResMed EDF (STR + DATALOG), O2Ring CSV/binary, 8 h 1 Hz generic CSV
   history_cost      the worker's per-event cost of a patient's state against its history length
3. e2e_*             on a private Kafka + PostgreSQL stack (respmon/testing/privatestack.py): throughput vs a bare
                     consumer baseline, upload-to-alert latency, worker peak RSS on a 10,000-patient batch
6. latency_at_load   (opt-in: --only latload) upload -> webhook latency under half the maximum throughput
5. worker_state      (opt-in: --only state) worker RSS and table recovery time with 120 nights of history per patient,
                     RocksDB against memory, 10,000 and 100,000 patients
4. web_view          the web view on a 1,000-patient, 2-year cohort seeded into a scratch database of the local stack
                     (infra/stack.sh start): inbox and patient page server time (median, p95), patient page bytes
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--only", default="oximetry,parsing,history,e2e,web", help="comma-separated subset")
    args, rest = ap.parse_known_args()
    only = set(args.only.split(","))
    quick = ["--quick"] if args.quick else []
    steps = [("oximetry", [HERE / "oximetry_metrics.py", *quick]), ("parsing", [HERE / "parsing.py", *quick]),
             ("history", [HERE / "history_cost.py", *quick]),
             ("e2e", [HERE / "e2e.py", *quick, *rest]), ("web", [HERE / "web_view.py", *quick]),
             ("state", [HERE / "worker_state.py", *quick]),  # opt-in (--only ...,state): ~20 min with 100,000
             ("latload", [HERE / "latency_at_load.py"])]  # opt-in (--only ...,latload): ~4 min
    failed = []
    for name, cmd in steps:
        if name not in only:
            continue
        t0 = time.monotonic()
        print(f"== {name}", file=sys.stderr, flush=True)
        rc = subprocess.run([sys.executable, *map(str, cmd)], stdout=subprocess.DEVNULL, check=False).returncode
        print(f"== {name}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {time.monotonic() - t0:.0f}s",
              file=sys.stderr, flush=True)
        if rc:
            failed.append(name)
    print(f"results in {HERE / 'results'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
