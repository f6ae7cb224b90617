"""Storage: the records and idempotency tables follow docs/architecture.md."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.storage import Storage
from tests.cdk.builders import bare_stack, resources


def tables(config: AipmConfig | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    stack = bare_stack()
    storage = Storage(stack, "Storage", config=config or AipmConfig())
    found = resources(Template.from_stack(stack), "AWS::DynamoDB::GlobalTable")
    ids = {
        name: stack.resolve(table.table_name)["Ref"]
        for name, table in (("records", storage.records), ("idempotency", storage.idempotency))
    }
    return found[ids["records"]], found[ids["idempotency"]]


def test_records_table_schema_indexes_stream_ttl() -> None:
    records, _ = tables()
    props = records["Properties"]
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    indexes = {i["IndexName"]: i for i in props["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"status-index", "repo-index", "kind-index"}
    for name, hash_key in c.GSI_HASH_KEYS.items():
        assert indexes[name]["KeySchema"] == [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": "createdAt", "KeyType": "RANGE"},
        ]
        assert indexes[name]["Projection"] == {"ProjectionType": "ALL"}


def test_both_tables_encrypted_with_point_in_time_recovery() -> None:
    for table in tables():
        props = table["Properties"]
        assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}
        replica = props["Replicas"][0]
        assert replica["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_idempotency_table_matches_powertools_defaults() -> None:
    _, idempotency = tables()
    props = idempotency["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}


def test_records_are_retained_unless_told_otherwise() -> None:
    records, _ = tables()
    assert records["DeletionPolicy"] == "Retain"
    assert records["Properties"]["Replicas"][0]["DeletionProtectionEnabled"] is True
    records, _ = tables(AipmConfig(retain_data=False))
    assert records["DeletionPolicy"] == "Delete"


WRITES = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}


def _records_writers(template: dict[str, Any]) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """The records table's logical id, and role logical id → the statements of its inline policies, for
    every role allowed an item-writing action on that table."""
    resources_ = template["Resources"]
    (records,) = [
        rid for rid, r in resources_.items() if r["Type"] == "AWS::DynamoDB::GlobalTable" and "Records" in rid
    ]
    statements: dict[str, list[dict[str, Any]]] = {}
    for policy in resources_.values():
        if policy["Type"] != "AWS::IAM::Policy":
            continue
        for role in policy["Properties"].get("Roles", []):
            statements.setdefault(role["Ref"], []).extend(policy["Properties"]["PolicyDocument"]["Statement"])
    arn = {"Fn::GetAtt": [records, "Arn"]}

    def writes(statement: dict[str, Any]) -> bool:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        targets = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        return statement["Effect"] == "Allow" and bool(WRITES & set(actions)) and arn in targets

    return records, {role: sts for role, sts in statements.items() if any(writes(s) for s in sts)}


def test_only_the_agent_role_may_write_the_agents_items(full_stack: Any) -> None:
    """docs/threat-model.md: heartbeat items (pk `AGENT#<id>`) are written by the agent role alone, each
    host its own, so the dispatcher can trust their endpoint. Every other role that may write the records
    table carries an explicit Deny of every item-writing action whose leading keys include `AGENT#*` (IAM's
    `dynamodb:LeadingKeys`; an explicit Deny overrides any Allow)."""
    records, writers = _records_writers(full_stack.json)
    agent_roles = {role for role in writers if role.startswith("AgentRole")}
    assert len(agent_roles) == 1, sorted(writers)
    others = set(writers) - agent_roles
    assert others, "the API and the reconciler write the records table too"
    for role in sorted(writers):
        denies = [
            s
            for s in writers[role]
            if s["Effect"] == "Deny"
            and s["Resource"] == {"Fn::GetAtt": [records, "Arn"]}
            and s.get("Condition") == {"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": ["AGENT#*"]}}
        ]
        if role in agent_roles:
            assert not denies, role
            (own,) = [s for s in writers[role] if s["Effect"] == "Deny"]
            assert own["Resource"] == {"Fn::GetAtt": [records, "Arn"]} and set(own["Action"]) >= WRITES
            # Denied: any AGENT# key that is not the caller's own (both operators must hold). For a role
            # assigned to an EC2 instance aws:userid is <role id>:<instance id>, the agent's id on the host.
            assert own["Condition"] == {
                "ForAnyValue:StringLike": {"dynamodb:LeadingKeys": ["AGENT#*"]},
                "ForAnyValue:StringNotEquals": {"dynamodb:LeadingKeys": ["AGENT#${aws:userid}"]},
            }
        else:
            assert len(denies) == 1 and set(denies[0]["Action"]) >= WRITES, (role, writers[role])
