"""The request loop both peer workers share (peer_worker.py: OpenVINO, et_worker.py: ExecuTorch).

It imports nothing of the project (the workers run with the Python of the peers' isolated environments and
find this file next to them on ``sys.path``). Protocol: each stdin line ``run N`` gets one JSON line
{"ms": [N latencies]}, each call timed inside the worker (no IPC in the figures); ``quit`` or EOF ends it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable


def serve(call: Callable[[], object]) -> int:
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "run":
            ms = []
            for _ in range(int(cmd[1])):
                a = time.perf_counter()
                call()
                ms.append((time.perf_counter() - a) * 1e3)
            print(json.dumps({"ms": ms}), flush=True)
    return 0
