"""Fixtures of the CDK tests: a bare stack per construct, and the full app synthesized once (cdk-nag on)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Before aws_cdk starts its jsii runtime: Node 20's end-of-life notice is noise here.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# Environment-agnostic synth, as on a machine without AWS credentials.
os.environ.pop("CDK_DEFAULT_ACCOUNT", None)
os.environ.pop("CDK_DEFAULT_REGION", None)

from aws_cdk.assertions import Template

from cdk.app import build_app, cdk_json_context


@dataclass(frozen=True)
class Synthesized:
    """A synthesized app: its cloud assembly directory and the stack's template."""

    outdir: Path
    stack_name: str
    template: Template

    @property
    def template_path(self) -> Path:
        return self.outdir / f"{self.stack_name}.template.json"

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.template_path.read_text())
        return data


def synthesize(outdir: Path, **context: object) -> Synthesized:
    """Build the real app with cdk.json's context plus overrides and synthesize it (cdk-nag runs)."""
    app, stack = build_app({**cdk_json_context(), **context}, outdir=str(outdir))
    app.synth()
    template = Template.from_json(json.loads((outdir / f"{stack.stack_name}.template.json").read_text()))
    return Synthesized(outdir=outdir, stack_name=stack.stack_name, template=template)


@pytest.fixture(scope="session", autouse=True)
def _stop_the_jsii_runtime() -> Iterator[None]:
    """aws_cdk runs on jsii's Node.js runtime, which jsii stops only when the interpreter exits — after the
    run's check that no test left a process behind (tests/conftest.py): stop it when the CDK tests end."""
    yield
    from jsii._runtime import kernel

    kernel.provider._process.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def full_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    """The default deployment (one agent host, new VPC without NAT), synthesized once per session."""
    yield synthesize(tmp_path_factory.mktemp("cdk-out"))


@pytest.fixture(scope="session")
def scaled_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    """The scale-out deployment: an Auto Scaling group of three agent hosts."""
    yield synthesize(tmp_path_factory.mktemp("cdk-out-asg"), agentAutoScaling="true", agentHostCount="3")
