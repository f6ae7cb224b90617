"""cdk-nag v3 acknowledgments: one rule (or one finding of a granular rule) per call, always with a reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, DefaultStackSynthesizer, Stack, Token, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str, applies_to: str | None = None) -> None:
    """Acknowledge `AwsSolutions-<rule>` (or its finding `applies_to`) on scope and everything below it."""
    rule_id = f"AwsSolutions-{rule}" + (f"[{applies_to}]" if applies_to else "")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def logical_id(construct: IConstruct) -> str:
    """Logical id of an L2 construct's CloudFormation resource, as granular findings print it."""
    resource = construct.node.default_child
    if not isinstance(resource, CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource")
    return Stack.of(construct).get_logical_id(resource)


def asset_bucket_objects(scope: IConstruct) -> str:
    """The granular finding for `<CDK asset bucket>/*`, as cdk-nag prints it for this stack's environment."""
    stack = Stack.of(scope)

    def part(value: str, pseudo: str) -> str:
        return f"<AWS::{pseudo}>" if Token.is_unresolved(value) else value

    qualifier = stack.node.try_get_context("@aws-cdk/core:bootstrapQualifier") or (
        DefaultStackSynthesizer.DEFAULT_QUALIFIER
    )
    return (
        f"Resource::arn:{part(stack.partition, 'Partition')}:s3:::cdk-{qualifier}-assets-"
        f"{part(stack.account, 'AccountId')}-{part(stack.region, 'Region')}/*"
    )
