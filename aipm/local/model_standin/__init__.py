"""A loopback stand-in for the model services the real coding-agent CLIs call (local mode and tests).

It speaks the four streamed APIs the CLIs use — Anthropic Messages, OpenAI Chat Completions, OpenAI
Responses, Gemini — with deterministic replies derived from ``TASK.md`` (:mod:`.script`), so a real CLI
makes a real change through its own tools with no model and no network. It keeps a request log (to
prove, say, that a second job's CLI saw nothing of the first) and has switches for slow replies,
errors, quota errors and never replying (:class:`Faults`, or directives in TASK.md).

``python -m aipm.local.model_standin [--port N] [--log FILE]`` serves until Ctrl-C and prints its base
URL on a line of its own.
"""

from aipm.local.model_standin.server import Faults, LoggedRequest, ModelStandin

__all__ = ["Faults", "LoggedRequest", "ModelStandin"]
