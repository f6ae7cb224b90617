"""Bare stacks holding one construct and the minimum it depends on, plus template queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import App, Environment, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template

from cdk.aipm_cdk.agent_host import AgentHost
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.configuration import Configuration
from cdk.aipm_cdk.functions import powertools_layer_arn
from cdk.aipm_cdk.network import Network
from cdk.aipm_cdk.storage import Storage
from cdk.app import cdk_json_context


def bare_stack(env: Environment | None = None, **context: Any) -> Stack:
    """An empty stack in an app with cdk.json's feature flags (and no cdk-nag)."""
    app = App(context={**cdk_json_context(), **context})
    return Stack(app, "Test", env=env)


@dataclass
class Parts:
    """The shared parts most constructs depend on, in one bare stack."""

    stack: Stack
    config: AipmConfig
    network: Network
    storage: Storage
    configuration: Configuration
    layer: lambda_.ILayerVersion
    topic: sns.Topic

    def agent_host(self) -> AgentHost:
        host = AgentHost(
            self.stack,
            "Agent",
            config=self.config,
            network=self.network,
            storage=self.storage,
            configuration=self.configuration,
            alarm_topic=self.topic,
        )
        self.configuration.add_endpoint_parameter(host.endpoint_value)
        return host


def parts(config: AipmConfig | None = None, **context: Any) -> Parts:
    """Network, storage, configuration, layer and an alarm topic in a bare stack."""
    config = config or AipmConfig()
    stack = bare_stack(**context)
    return Parts(
        stack=stack,
        config=config,
        network=Network(stack, "Network", config=config),
        storage=Storage(stack, "Storage", config=config),
        configuration=Configuration(stack, "Configuration", config=config),
        layer=lambda_.LayerVersion.from_layer_version_arn(
            stack, "Layer", powertools_layer_arn(stack, config)
        ),
        topic=sns.Topic(stack, "Topic"),
    )


def resources(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id → resource of one type."""
    return {
        logical_id: dict(resource) for logical_id, resource in template.find_resources(resource_type).items()
    }


def policy_statements(template: Template, role_logical_id_prefix: str) -> list[dict[str, Any]]:
    """Statements of the inline policies attached to the role whose logical id starts with the prefix."""
    statements: list[dict[str, Any]] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        roles = [r.get("Ref", "") for r in policy["Properties"].get("Roles", [])]
        if any(str(r).startswith(role_logical_id_prefix) for r in roles):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def as_list(value: Any) -> list[Any]:
    """IAM's "one or many" fields as a list."""
    return value if isinstance(value, list) else [value]
