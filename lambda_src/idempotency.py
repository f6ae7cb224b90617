"""The Idempotency-Key header of the delegate route, on Powertools idempotency with DynamoDB persistence.

- The record's key is a hash of (caller id, Idempotency-Key): one user's key never answers another user.
- The validated request body is the validation payload: the same key with another body is refused
  (IdempotencyKeyReused → 422 naming Idempotency-Key).
- Only a success is stored. Whatever the delegation raises (a GitHub outage, an unknown repository, an owner
  not allowed) deletes the in-progress record, so the same key can be retried; request validation errors
  happen before this point and never touch the store.
- While the first request runs, a second one with the same key gets IdempotencyInProgress (409); the
  in-progress record expires with the Lambda invocation's remaining time, so a crashed invocation does not
  block the key for longer than that.
- If the delegation succeeded but its success could not be recorded, the caller still gets the result; the
  in-progress record then expires as above.
- A delegation that stopped half-way (the invocation killed after GitHub opened the PR) is not repeated by a
  retry with the same key once the in-progress record has expired: the delegation's intent, keyed by the
  same (caller, key), is settled first and its PR returned (lambda_src.delegation).

Powertools is imported when the first store is built, not when the handler module loads (cold start).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lambda_src.errors import IdempotencyInProgress, IdempotencyKeyReused, IdempotencyUnavailable

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

Body = dict[str, Any]
KEY_PREFIX = "delegate"


@dataclass(frozen=True)
class Outcome:
    """The response body, and whether it is the stored answer to an earlier request with the same key."""

    body: Body
    replayed: bool


@dataclass(frozen=True)
class _Replayed:
    body: Body


def _produce(*, payload: Mapping[str, Any], produce: Callable[[], Body]) -> Body:
    """The function Powertools makes idempotent: `payload` is what is hashed, `produce` does the work."""
    return produce()


class IdempotencyStore:
    """Runs a producer at most once per (caller, key) while the record lives (`ttl_s`)."""

    def __init__(self, table_name: str, client: DynamoDBClient, *, ttl_s: int) -> None:
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )

        self._config = IdempotencyConfig(
            event_key_jmespath="[caller, key]",
            payload_validation_jmespath="request",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=ttl_s,
            hash_function="sha256",
            response_hook=_mark_replayed,
        )
        persistence = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client)
        self._run: Callable[..., Body | _Replayed] = idempotent_function(
            _produce,
            data_keyword_argument="payload",
            persistence_store=persistence,
            config=self._config,
            key_prefix=KEY_PREFIX,
        )

    def register_invocation(self, context: Any) -> None:
        """Tell the store the current Lambda context (its remaining time bounds the in-progress record)."""
        self._config.register_lambda_context(context)

    def run(
        self, *, caller_id: str, key: str, request: Mapping[str, Any], produce: Callable[[], Body]
    ) -> Outcome:
        """`produce()`'s body, or the body stored for (caller_id, key).

        Raises IdempotencyKeyReused, IdempotencyInProgress, IdempotencyUnavailable, and whatever `produce`
        raises (the key stays free for a retry).
        """
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyInconsistentStateError,
            IdempotencyPersistenceLayerError,
            IdempotencyValidationError,
        )

        produced: list[Body] = []

        def once() -> Body:
            produced.append(produce())
            return produced[0]

        payload = {"caller": caller_id, "key": key, "request": dict(request)}
        try:
            result = self._run(payload=payload, produce=once)
        except IdempotencyValidationError as err:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request body", field="Idempotency-Key"
            ) from err
        except IdempotencyAlreadyInProgressError as err:
            raise IdempotencyInProgress(
                "the first request with this Idempotency-Key is still running; retry shortly",
                field="Idempotency-Key",
            ) from err
        except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError) as err:
            if produced:
                log.error(
                    "delegated, but the idempotency record could not be completed: %s", type(err).__name__
                )
                return Outcome(produced[0], replayed=False)
            raise IdempotencyUnavailable("the idempotency store is unavailable; nothing was created") from err
        if isinstance(result, _Replayed):
            return Outcome(result.body, replayed=True)
        return Outcome(result, replayed=False)


def _mark_replayed(response: Any, idempotent_data: DataRecord) -> _Replayed:
    return _Replayed(dict(response or {}))
