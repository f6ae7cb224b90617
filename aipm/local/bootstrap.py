"""Creates, in the local AWS emulator, what the CDK app creates in the cloud: tables, secrets, parameters."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from lambda_src.records.schema import (
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_TTL_ATTRIBUTE,
    INDEXES,
    PARTITION_KEY,
    SORT_KEY,
    TTL_ATTRIBUTE,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ssm import SSMClient


def create_records_table(ddb: DynamoDBClient, name: str) -> str:
    """Create the records table (keys, GSIs, stream, TTL) as the CDK app does; returns its stream ARN."""
    attributes = {PARTITION_KEY, SORT_KEY} | {a for i in INDEXES for a in (i.partition_key, i.sort_key)}
    resp = ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in sorted(attributes)],
        KeySchema=[
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": i.name,
                "KeySchema": [
                    {"AttributeName": i.partition_key, "KeyType": "HASH"},
                    {"AttributeName": i.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for i in INDEXES
        ],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    ddb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )
    return resp["TableDescription"]["LatestStreamArn"]


def create_idempotency_table(ddb: DynamoDBClient, name: str) -> None:
    """Create the Powertools idempotency table (key `id`, TTL `expiration`)."""
    ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": IDEMPOTENCY_KEY, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": IDEMPOTENCY_KEY, "KeyType": "HASH"}],
    )
    ddb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": IDEMPOTENCY_TTL_ATTRIBUTE},
    )


def put_token_secret(secrets: SecretsManagerClient, name: str, token: str) -> str:
    """Store `{"token": ...}` under `name`; returns the secret's ARN."""
    return secrets.create_secret(Name=name, SecretString=json.dumps({"token": token}))["ARN"]


def put_parameter(ssm: SSMClient, name: str, value: str) -> None:
    ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
