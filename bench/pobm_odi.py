"""Runs inside bench/.venv-pobm (pobm 1.2 needs numpy < 2): time pobm's ODI3 on nights from a .npy file.

Usage: bench/.venv-pobm/bin/python bench/pobm_odi.py NIGHTS.npy REPEAT  ->  one JSON object on stdout:
{"pobm": version, "numpy": version, "ms": [best-of-REPEAT ms per night], "odi3": [...], "odi4": [...]}.
The array is (nights, samples), 1 Hz, dropouts already filled (pobm does not accept NaN).
Timed call: `DesaturationsMeasures(ODI_Threshold=3).compute(signal)` (object construction included).
"""

import json
import sys
import time
import warnings
from importlib.metadata import version

import numpy as np
from pobm.obm.desat import DesaturationsMeasures

warnings.simplefilter("ignore")


def main() -> None:
    nights = np.load(sys.argv[1])
    repeat = int(sys.argv[2])
    DesaturationsMeasures(ODI_Threshold=3).compute(nights[0])  # warm-up
    ms, odi3, odi4 = [], [], []
    for signal in nights:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = DesaturationsMeasures(ODI_Threshold=3).compute(signal)
            best = min(best, time.perf_counter() - t0)
        ms.append(best * 1e3)
        odi3.append(float(result.ODI))
        odi4.append(float(DesaturationsMeasures(ODI_Threshold=4).compute(signal).ODI))
    print(json.dumps({"pobm": version("pobm"), "numpy": np.__version__, "ms": ms, "odi3": odi3, "odi4": odi4}))


if __name__ == "__main__":
    main()
