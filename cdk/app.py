"""CDK app entry point (`cdk.json`: `.venv/bin/python -m cdk.app`): one stack, cdk-nag AwsSolutions checks."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.stack import AipmStack


def cdk_json_context() -> dict[str, Any]:
    """The context block of the repository's cdk.json (feature flags and defaults), for tests."""
    data: dict[str, Any] = json.loads((c.REPO_ROOT / "cdk.json").read_text())
    return dict(data.get("context", {}))


def build_app(context: Mapping[str, Any] | None = None, outdir: str | None = None) -> tuple[App, AipmStack]:
    """The app with its stack and the AwsSolutions rule pack registered as a validation plugin."""
    app = App(context=dict(context) if context is not None else None, outdir=outdir)
    config = AipmConfig.from_context(app.node)
    env = Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    stack = AipmStack(app, f"Aipm-{config.stage}", config=config, env=env)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app, stack


def main() -> None:
    """Synthesize (the CDK CLI runs this and passes context and the output directory)."""
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
