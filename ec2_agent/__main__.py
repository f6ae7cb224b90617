"""`python -m ec2_agent` / `aipm-agent`: run the agent until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from ec2_agent import jsonlog
from ec2_agent.app import Agent
from ec2_agent.config import ConfigError, load_settings

log = logging.getLogger("ec2_agent")


def main() -> int:
    jsonlog.configure()
    try:
        settings = load_settings()
    except ConfigError as err:
        log.error(str(err))
        return 2
    try:
        agent = Agent(settings)
    except ConfigError as err:
        log.error(str(err))
        return 2

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received", extra={"signal": signal.Signals(signum).name})
        threading.Thread(target=agent.shutdown, name="shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.start()
    agent.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
