"""One registration in its own process, for the registry race and kill tests.

``python -m tests.components.lib.registry_worker --registry R --model M --key K``
registers ``M`` under ``K`` and prints the version as one JSON line. The tests start
several at once (``--ready`` / ``--go`` files line them up) and SIGKILL some of them
in the middle of a registration: ``--pause-at publish`` stops after the number is
reserved and bound to the key but before any file is copied, ``--pause-at alias``
after the marker is written but before the alias moves. The worker writes
``--paused`` when it gets there and then waits to be killed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from components.lib import registry
from trainer.contracts import storage


def _pause(paused: str) -> None:
    storage.write_text(paused, str(os.getpid()))
    while True:  # the test kills us here
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--registry", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--gcs-endpoint", default="")
    p.add_argument("--ready", default="", help="file to create once imported")
    p.add_argument("--go", default="", help="file to wait for before registering")
    p.add_argument("--pause-at", choices=["publish", "alias"], default=None)
    p.add_argument("--paused", default="", help="file to create when paused")
    args = p.parse_args(argv)
    if args.gcs_endpoint:
        from tests.fixtures.gcs import _make_client

        storage.set_gcs_client(_make_client(args.gcs_endpoint))
    if args.pause_at == "publish":
        registry._publish = lambda *a, **k: _pause(args.paused)  # type: ignore[assignment]
    elif args.pause_at == "alias":
        registry._move_alias = lambda *a, **k: _pause(args.paused)  # type: ignore[assignment]
    if args.ready:
        storage.write_text(args.ready, "")
    while args.go and not os.path.exists(args.go):
        time.sleep(0.005)
    found: Any = registry.register(
        args.registry, args.model, {"key": args.key}, idempotency_key=args.key
    )
    print(json.dumps(found.to_dict(), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
