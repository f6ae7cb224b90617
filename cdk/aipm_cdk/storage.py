"""Storage: the records table (jobs, PRs, heartbeats; the queue) and the Powertools idempotency table."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig

_S = dynamodb.AttributeType.STRING


class Storage(Construct):
    """Two on-demand tables, KMS-encrypted, with point-in-time recovery and TTL."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AipmConfig) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        self.records = dynamodb.TableV2(
            self,
            "Records",
            partition_key=dynamodb.Attribute(name=c.PK, type=_S),
            sort_key=dynamodb.Attribute(name=c.SK, type=_S),
            billing=dynamodb.Billing.on_demand(),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=c.TTL_ATTRIBUTE,
            dynamo_stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
            deletion_protection=config.retain_data,
            removal_policy=removal,
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=index,
                    partition_key=dynamodb.Attribute(name=hash_key, type=_S),
                    sort_key=dynamodb.Attribute(name=c.CREATED_AT, type=_S),
                    projection_type=dynamodb.ProjectionType.ALL,
                )
                for index, hash_key in c.GSI_HASH_KEYS.items()
            ],
        )
        self.idempotency = dynamodb.TableV2(
            self,
            "Idempotency",
            partition_key=dynamodb.Attribute(name=c.IDEMPOTENCY_KEY, type=_S),
            billing=dynamodb.Billing.on_demand(),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=c.IDEMPOTENCY_TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.DESTROY,
        )

    def grant_records_to_service(self, grantee: iam.IGrantable) -> None:
        """Read and write the records table, except the agents' own items: an explicit Deny on every
        item-writing action whose leading keys include `AGENT#...` (`dynamodb:LeadingKeys`,
        `ForAnyValue:StringLike`: a batch or transaction with one such key is refused whole). Only the agent
        role (granted without it) may then write a heartbeat the dispatcher would trust. Source: DynamoDB
        developer guide, "Using IAM policy conditions for fine-grained access control" (dynamodb:LeadingKeys;
        TransactWriteItems is authorised per underlying PutItem/UpdateItem/DeleteItem)."""
        self._grant_records_denying(grantee, {})

    def grant_records_to_agent(self, role: iam.IGrantable) -> None:
        """Read and write the records table; of the agents' own items only the caller's: an explicit Deny on
        every item-writing action whose leading keys include an `AGENT#...` key other than
        `AGENT#${aws:userid}` (`ForAnyValue:StringLike` and `ForAnyValue:StringNotEquals` on
        `dynamodb:LeadingKeys`, both must hold). For a role assigned to an EC2 instance, `aws:userid` is
        `<role id>:<instance id>` (IAM User Guide, "IAM policy elements: Variables and tags"), the agent's
        id on the host (cdk/host/bootstrap.sh, host-facts): a host writes its own heartbeat, never another's,
        though all hosts share the role. Policy variables in `dynamodb:LeadingKeys` values: DynamoDB developer
        guide, "Using IAM policy conditions for fine-grained access control". Heartbeats must stay
        single-item writes: a BatchWriteItem mixing the host's own AGENT# key with any other key is
        denied (`ForAnyValue:StringNotEquals` holds for the other key)."""
        own = {"dynamodb:LeadingKeys": [f"{c.AGENT_PK_PREFIX}${{aws:userid}}"]}
        self._grant_records_denying(role, {"ForAnyValue:StringNotEquals": own})

    def _grant_records_denying(self, grantee: iam.IGrantable, unless: dict[str, Any]) -> None:
        """Read and write on the records table, with an explicit Deny of item writes to `AGENT#` keys,
        narrowed by the further conditions `unless` (all must hold for the Deny to apply)."""
        self.records.grant_read_write_data(grantee)
        agents = {"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": [f"{c.AGENT_PK_PREFIX}*"]}}
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                actions=list(RECORD_WRITE_ACTIONS),
                resources=[self.records.table_arn],
                conditions={**agents, **unless},
            )
        )


# Every DynamoDB action that writes items (PartiQL ones included, though no grant here gives them).
RECORD_WRITE_ACTIONS = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
)
