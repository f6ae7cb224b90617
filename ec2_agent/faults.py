"""Faults of a slot's own machinery, as opposed to the job's.

A `SlotFault` says "this slot could not run the job, through no fault of the job": a broken or locked
workspace, a sandbox that would not start. The runner hands such a job back to the queue without using one of
its attempts (`JobStore.release(counted=False)`); only the CLI's own crashes and timeouts use attempts.
Modules that build a slot's workspace or sandbox raise subclasses of it.
"""

from __future__ import annotations


class SlotFault(RuntimeError):
    """This slot's workspace or sandbox failed; the job is not at fault. The message says what broke."""
