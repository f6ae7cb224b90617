"""A local git forge: real bare repositories plus a GitHub-compatible subset of the REST and GraphQL APIs.

Shaped like GitHub Enterprise on a loopback address: REST under `<base>/api/v3`, GraphQL at
`<base>/api/graphql`, git smart HTTP at `<base>/<owner>/<repo>.git` (the real `git http-backend`), and PR
pages at `<base>/<owner>/<repo>/pull/<n>`.
Run one with `python -m aipm.local.forge --root DIR --token-file FILE [--port N] [--repo OWNER/REPO]`.
"""

from aipm.local.forge.cli import main
from aipm.local.forge.faults import ROUTES
from aipm.local.forge.server import Forge

__all__ = ["ROUTES", "Forge", "main"]
