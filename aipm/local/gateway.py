"""The local stand-in for API Gateway and the Lambda event sources.

`python -m aipm.local.gateway --port N` runs, in one process configured like the Lambdas' environment:
- an HTTP server on 127.0.0.1 that turns each request into an API Gateway REST proxy event for the real
  `lambda_src.handler.lambda_handler` (after verifying the caller's ID token and putting its claims on the
  event, as API Gateway's Cognito authorizer does: `aipm.local.authorizer`), and
- a stream pump that reads the records table's DynamoDB stream from the local emulator and calls the real
  `lambda_src.dispatch_handler.lambda_handler` with stream events, as Lambda's event source mapping does.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import get_context
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3

from aipm.local.authorizer import CognitoAuthorizer, NotAuthorized
from lambda_src.errors import SIGN_IN_HINT

log = logging.getLogger(__name__)

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
# No Cognito caller on these, as in the CDK app (the webhook authenticates by its X-Hub-Signature-256).
PUBLIC_ROUTES = {("GET", "/api/health"), ("GET", "/api/openapi.json"), ("POST", "/api/github/webhook")}
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's own payload limit
STREAM_POLL_S = 0.05  # Lambda's stream poller reads each shard several times a second
SHARD_REFRESH_S = 1.0  # how often the pump looks for new shards


@dataclass(frozen=True)
class LambdaContext:
    """The attributes of the Lambda context object that the handlers read."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:local"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def proxy_event(
    method: str,
    raw_path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    host: str,
    source_ip: str,
    claims: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event for this request, as API Gateway would send it; `claims` are the
    Cognito authorizer's (none on the public routes)."""
    parts = urlsplit(raw_path)
    query = parse_qs(parts.query, keep_blank_values=True)
    text: str | None
    try:
        text, is_b64 = (body.decode("utf-8"), False) if body else (None, False)
    except UnicodeDecodeError:
        text, is_b64 = base64.b64encode(body).decode(), True
    return {
        "resource": "/{proxy+}",
        "path": parts.path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": parts.path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": parts.path,
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": time.time_ns() // 1_000_000,
            "domainName": host,
            "protocol": "HTTP/1.1",
            "accountId": "000000000000",
            "apiId": "local",
            "identity": {"sourceIp": source_ip},
            "authorizer": {"claims": dict(claims)} if claims is not None else None,
        },
        "body": text,
        "isBase64Encoded": is_b64,
    }


def _invoke_api(event: dict[str, Any]) -> dict[str, Any]:
    """Run the API handler in this worker process (one request at a time, like a Lambda container)."""
    from lambda_src import handler

    run: LambdaHandler = handler.lambda_handler
    return run(
        event, LambdaContext(function_name="aipm-api", aws_request_id=event["requestContext"]["requestId"])
    )


class Gateway:
    """Serves the API on 127.0.0.1, handing each request to one of `containers` worker processes: like
    Lambda, each container runs one request at a time (the Powertools resolver keeps per-request state in
    module globals), and several run side by side."""

    def __init__(
        self, authorizer: CognitoAuthorizer, port: int = 0, *, containers: int = 4, origin: str = ""
    ) -> None:
        self._authorizer = authorizer
        self._origin = origin
        self._containers = ProcessPoolExecutor(max_workers=containers, mp_context=get_context("spawn"))
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "aipm-local-gateway"
            sys_version = ""

            def do_GET(self) -> None:
                gateway.handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET  # noqa: N815 - http.server's names

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("gateway " + format, *args)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def shutdown(self) -> None:
        """Stop serving (call from another thread than `serve_forever`'s) and end the worker processes,
        waiting for them (so neither they nor multiprocessing's resource tracker outlive the gateway)."""
        self._httpd.shutdown()
        self.close()

    def request_stop(self) -> None:
        """Make `serve_forever` return soon (safe in a signal handler: `shutdown` waits for the serving
        loop, so it runs on a thread of its own)."""
        threading.Thread(target=self._httpd.shutdown, name="gateway-stop", daemon=True).start()

    def close(self) -> None:
        """End the worker processes and wait for them; call after `serve_forever` has returned."""
        self._httpd.server_close()
        self._containers.shutdown(wait=True, cancel_futures=True)

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        method, path = req.command, urlsplit(req.path).path
        length = int(req.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(req, 413, {"Content-Type": "application/json"}, b'{"message":"Request Too Long"}')
            return
        body = req.rfile.read(length) if length else b""
        claims: dict[str, str] | None = None
        if method != "OPTIONS" and (method, path) not in PUBLIC_ROUTES:
            try:
                claims = self._authorizer.claims(req.headers.get("Authorization"))
            except NotAuthorized as refused:
                # The CDK app's UNAUTHORIZED gateway response (with CORS headers, so a browser can read it):
                # the API's error shape with how to sign in, whatever API Gateway's own message was.
                log.debug("401: %s", refused.message)
                headers = {"Content-Type": "application/json", "Access-Control-Allow-Origin": self._origin}
                refusal = {"error": "unauthenticated", "message": SIGN_IN_HINT}
                self._send(req, 401, headers, json.dumps(refusal).encode())
                return
        headers = {k: v for k, v in req.headers.items()}
        headers["X-Forwarded-Proto"] = "http"
        host = req.headers.get("Host") or self.url.removeprefix("http://")
        event = proxy_event(
            method, req.path, headers, body, host=host, source_ip=req.client_address[0], claims=claims
        )
        result = self._containers.submit(_invoke_api, event).result()
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        out_headers = dict(result.get("headers") or {})
        for name, values in (result.get("multiValueHeaders") or {}).items():
            out_headers[name] = ", ".join(values)
        self._send(req, int(result.get("statusCode", 502)), out_headers, data)

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, headers: Mapping[str, str], data: bytes) -> None:
        req.send_response(status)
        for name, value in headers.items():
            if name.lower() != "content-length":
                req.send_header(name, value)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)


class StreamPump:
    """Reads every shard of a DynamoDB stream and delivers batches to a handler, like Lambda's poller."""

    def __init__(self, stream_arn: str, handler: LambdaHandler) -> None:
        self._arn = stream_arn
        self._handler = handler
        self._streams = boto3.client("dynamodbstreams")
        self._stop = threading.Event()
        self._iterators: dict[str, str | None] = {}

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        refreshed_at = float("-inf")
        while not self._stop.is_set():
            try:
                if time.monotonic() - refreshed_at >= SHARD_REFRESH_S:
                    self._refresh_shards()
                    refreshed_at = time.monotonic()
                delivered = self._pump_once()
            except Exception:
                log.exception("stream pump failed; retrying")
                delivered = 0
            if not delivered:
                self._stop.wait(STREAM_POLL_S)

    def _refresh_shards(self) -> None:
        shards = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"].get("Shards", [])
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]

    def _pump_once(self) -> int:
        delivered = 0
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None:
                continue
            resp = self._streams.get_records(ShardIterator=iterator, Limit=100)
            self._iterators[shard_id] = resp.get("NextShardIterator")
            records = resp.get("Records", [])
            if records:
                event = {"Records": [self._lambda_record(r) for r in records]}
                context = LambdaContext(function_name="aipm-dispatch", aws_request_id=str(uuid.uuid4()))
                self._handler(json.loads(json.dumps(event, default=_jsonable)), context)
                delivered += len(records)
        return delivered

    def _lambda_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {**record, "eventSourceARN": self._arn}


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return int(value.timestamp())
    raise TypeError(f"cannot serialise {type(value).__name__}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Local API Gateway + Lambda event sources for the AIPM API")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stream-arn", required=True)
    parser.add_argument("--issuer", required=True, help="the ID tokens' issuer (the OIDC stand-in's)")
    parser.add_argument(
        "--audience", action="append", required=True, help="an app client id the tokens may be for (repeat)"
    )
    parser.add_argument("--containers", type=int, default=4, help="API handler processes (default 4)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from lambda_src import dispatch_handler

    gateway = Gateway(
        CognitoAuthorizer(args.issuer, args.audience),
        args.port,
        containers=args.containers,
        origin=os.environ.get("ALLOWED_ORIGIN", ""),
    )
    pump = StreamPump(args.stream_arn, dispatch_handler.lambda_handler)
    threading.Thread(target=pump.run, name="stream-pump", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: gateway.request_stop())
    print(f"gateway ready {gateway.url}", flush=True)
    try:
        gateway.serve_forever()
    finally:
        pump.stop()
        gateway.close()


if __name__ == "__main__":
    main()
