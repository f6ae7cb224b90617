"""Job, PR and heartbeat records and their data-access layer (shared by the Lambda and the agent)."""
