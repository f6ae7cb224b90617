"""Run inside a network namespace the test made (`unshare --net`): a stand-in for the instance metadata
service on 169.254.169.254:80, reached once from outside the sandbox (so the stand-in demonstrably works)
and then from inside the agent's sandbox. Prints one JSON object: what each probe got."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ec2_agent.sandbox import Sandbox, SandboxPolicy

METADATA = "169.254.169.254"
URL = f"http://{METADATA}/latest/meta-data/iam/security-credentials/"
PROBE = (
    "import urllib.request as u\n"
    "try:\n"
    f"    print(u.urlopen('{URL}', timeout=3).read().decode())\n"
    "except OSError as err:\n"
    "    print('refused:', err)\n"
)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"aipm-instance-role"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


def main(work: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{METADATA}/32", "dev", "lo"], check=True)
    server = ThreadingHTTPServer((METADATA, 80), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    results: dict[str, str] = {}
    outside = subprocess.run(["/usr/bin/python3", "-c", PROBE], capture_output=True, text=True, timeout=30)
    results["outside"] = outside.stdout.strip()
    box = Sandbox(work / "slots" / "1", work / "homes" / "cli", SandboxPolicy(network="none"))
    box.start()
    try:
        argv, env = box.command(["/usr/bin/python3", "-c", PROBE], {})
        inside = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        results["sandbox"] = (inside.stdout + inside.stderr).strip()
    finally:
        box.stop()
        server.shutdown()
    print(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
