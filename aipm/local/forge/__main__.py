"""`python -m aipm.local.forge`: run one forge until SIGTERM or Ctrl-C."""

from aipm.local.forge.cli import main

main()
