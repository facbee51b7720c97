"""Alert latency (upload accepted -> webhook received) while the pipeline carries half its maximum throughput.

On a private stack: background devices upload O2Ring nights + NIV rows (the throughput benchmark's upload)
open loop at `--rate` uploads/s (default: half of bench/results/e2e_throughput.json's pipeline uploads/s),
and meanwhile low-FVC spirometry sessions (rule NS-FVC50), 1 a second, each raise one alert; the latency of
each alert is measured from the client's 202 to the webhook request (alerts.receiver), wall clock.
Target p99 < 2 s. Usage: python bench/latency_at_load.py [--rate R] [--seconds S]; the worker takes
RESPMON_WORKER_BATCH_MAX from the environment (the batch an alert may wait behind: see README).
Writes bench/results/latency_at_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, spirometry_json, write_result
from e2e import SECRET, Env, _o2ring_nights, _post, _Stamped, _upload_night, provision, service, wait_until

from alerts.receiver import WebhookReceiver
from respmon.testing.privatestack import PrivateStack

THROUGHPUT = ROOT / "bench" / "results" / "e2e_throughput.json"


def half_max_rate() -> float:
    """Half of the pipeline's measured uploads/s (the throughput benchmark's last result)."""
    try:
        return round(json.loads(THROUGHPUT.read_text())["pipeline"]["uploads_per_s"] / 2, 1)
    except (OSError, KeyError, ValueError):
        return 30.0


class OpenLoop:
    """Calls `send(i)` at `rate` a second for `seconds` from a thread pool: a slow answer delays nothing."""

    def __init__(self, rate: float, seconds: float, send: Any, workers: int) -> None:
        self.rate, self.n, self.send, self.workers = rate, int(rate * seconds), send, workers
        self.late: list[float] = []  # how far behind schedule each submission was (the pool was full)

    def run(self) -> None:
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = []
            for i in range(self.n):
                delay = t0 + i / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    self.late.append(-delay)
                futures.append(pool.submit(self.send, i))
            for f in futures:
                f.result()


def run(rate: float, seconds: float, logs: Path) -> dict[str, Any]:
    with PrivateStack() as stack:
        env = Env(stack, "latload", ROOT, logs)
        env.prepare()
        load_patients = [f"LL{i:05d}" for i in range(int(rate * seconds))]
        alert_patients = [f"LA{i:05d}" for i in range(int(seconds) + 1)]
        tokens = provision(env.url, load_patients + alert_patients)
        nights = _o2ring_nights(20, seed=11)
        taken = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        bodies = {p: spirometry_json(p, taken, fvc_pct_pred=40.0, fvc_l=1.4) for p in alert_patients}
        accepted: dict[str, float] = {}
        lock, local = threading.Lock(), threading.local()
        with ExitStack() as es:
            receiver = es.enter_context(WebhookReceiver(SECRET))
            receiver.received = _Stamped()  # each request stamped with its arrival time
            es.enter_context(service(env, "worker", "RESPMON_WORKER_WEB_PORT", "latload-worker.log",
                                     RESPMON_WEBHOOK_URL=receiver.url))
            _, iurl = es.enter_context(service(env, "ingest", "RESPMON_INGEST_PORT", "latload-ingest.log"))

            def client() -> httpx.Client:
                if not hasattr(local, "c"):
                    local.c = httpx.Client()
                return local.c

            def load(i: int) -> None:
                p = load_patients[i]
                _upload_night(client(), iurl, tokens[p], p, nights[i % len(nights)], np.random.default_rng(i))

            def alert(i: int) -> None:
                p = alert_patients[i + 1]
                _post(client(), iurl, tokens[p], bodies[p], "application/json")
                with lock:
                    accepted[p] = time.time()

            _post(client(), iurl, tokens[alert_patients[0]], bodies[alert_patients[0]], "application/json")  # warm
            wait_until(lambda: len(receiver.received) >= 1, 60, "warm-up alert")
            background, alerts = OpenLoop(rate, seconds, load, 16), OpenLoop(1.0, seconds, alert, 4)
            threads = [threading.Thread(target=loop.run) for loop in (background, alerts)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            sent_s = time.monotonic() - t0
            wait_until(lambda: len({r.body.get("patient_id") for r in receiver.received}) >= len(accepted) + 1, 300,
                       "every alert delivered")
            at = {r.body.get("patient_id"): r.at for r in reversed(receiver.received)}
    lat = sorted(at[p] - accepted[p] for p in accepted if p in at)
    p99 = float(np.percentile(lat, 99))
    return {"load_rate_per_s": rate, "worker_batch_max": int(os.environ.get("RESPMON_WORKER_BATCH_MAX", "200")),
            "load": "O2Ring CSV night (8 h at 4 s) + NIV CSV row per upload, open loop",
            "load_rate_source": "half of e2e_throughput.json pipeline uploads_per_s unless --rate",
            "seconds": seconds, "load_uploads": background.n, "load_achieved_per_s": round(background.n / sent_s, 1),
            "load_submissions_behind_schedule": len(background.late),
            "alerts": len(lat), "alert_rate_per_s": 1.0,
            "measured": "HTTP 202 to the client -> webhook request received, wall clock",
            "p50_s": round(float(np.percentile(lat, 50)), 3), "p90_s": round(float(np.percentile(lat, 90)), 3),
            "p99_s": round(p99, 3), "max_s": round(lat[-1], 3), "target": "p99 < 2 s", "target_met": p99 < 2.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=None, help="background uploads/s (default: half the measured max)")
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    logs = Path(os.environ.get("RESPMON_BENCH_LOGS") or f"/tmp/respmon-bench-latload-{uuid.uuid4().hex[:6]}")
    logs.mkdir(parents=True, exist_ok=True)
    rate = args.rate if args.rate is not None else half_max_rate()
    result = run(rate, args.seconds, logs)
    write_result("latency_at_load", {"service_logs": str(logs), **result})
    print(json.dumps(result, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
