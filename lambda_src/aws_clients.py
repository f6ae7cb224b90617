"""AWS clients and cached secret/parameter reads for the Lambdas (boto3 lives here and in records.store)."""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.utilities import parameters

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SECRET_CACHE_S = 300


class SecretUnavailable(RuntimeError):
    """A secret or parameter could not be read, or does not hold what it should."""


@cache
def dynamodb() -> DynamoDBClient:
    """One DynamoDB client per container (honours AWS_ENDPOINT_URL, so local mode points it at moto)."""
    return boto3.client("dynamodb")


def secret_json(secret_id: str) -> dict[str, Any]:
    """A JSON secret's fields, cached for SECRET_CACHE_S across invocations. Raises SecretUnavailable."""
    try:
        value = parameters.get_secret(secret_id, max_age=SECRET_CACHE_S)
        fields = json.loads(value) if isinstance(value, str | bytes) else value
    except (parameters.exceptions.GetParameterError, ValueError) as err:
        raise SecretUnavailable(f"secret {secret_id} could not be read") from err
    if not isinstance(fields, dict):
        raise SecretUnavailable(f"secret {secret_id} is not a JSON object")
    return fields


def secret_token(secret_id: str) -> str:
    """The `token` field of a JSON secret, cached for SECRET_CACHE_S across invocations.

    Raises SecretUnavailable if it cannot be read or has no token.
    """
    token = secret_json(secret_id).get("token")
    if not isinstance(token, str) or not token:
        raise SecretUnavailable(f"secret {secret_id} has no token")
    return token


def ssm_parameter(name: str) -> str:
    """An SSM parameter's value, cached for SECRET_CACHE_S. Raises SecretUnavailable."""
    try:
        return str(parameters.get_parameter(name, max_age=SECRET_CACHE_S))
    except parameters.exceptions.GetParameterError as err:
        raise SecretUnavailable(f"parameter {name} could not be read") from err
