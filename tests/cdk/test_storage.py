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
