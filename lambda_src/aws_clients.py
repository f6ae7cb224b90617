"""AWS clients and cached secret/parameter reads for the Lambdas (boto3 lives here and in records.store)."""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING

import boto3
from aws_lambda_powertools.utilities import parameters

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SECRET_CACHE_S = 300


@cache
def dynamodb() -> DynamoDBClient:
    """One DynamoDB client per container (honours AWS_ENDPOINT_URL, so local mode points it at moto)."""
    return boto3.client("dynamodb")


def secret_token(secret_id: str) -> str:
    """The `token` field of a JSON secret, cached for SECRET_CACHE_S across invocations.

    Raises KeyError if the secret has no token, and Powertools' GetParameterError if it cannot be read.
    """
    value = parameters.get_secret(secret_id, max_age=SECRET_CACHE_S)
    token = json.loads(value)["token"] if isinstance(value, str) else value["token"]
    return str(token)


def ssm_parameter(name: str) -> str:
    """An SSM parameter's value, cached for SECRET_CACHE_S."""
    return str(parameters.get_parameter(name, max_age=SECRET_CACHE_S))
