"""Single-concern constructs composed by `AipmStack`; names and sizes in `constants`."""
