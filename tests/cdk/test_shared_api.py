"""The deploy option that adds our routes to the existing AIPM REST API (imported by id): one base URL for the
AIPM frontend. Synthesized with the real app (cdk-nag on) and checked in the template."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.cdk.builders import resources
from tests.cdk.conftest import synthesize
from tests.cdk.test_stack import CFN_LINT

IDS = {"aipmRestApiId": "a1b2c3d4e5", "aipmRootResourceId": "r00t12", "aipmApiResourceId": "ap1r35"}


def test_our_routes_on_the_aipm_rest_api_with_our_authorizer_and_a_new_deployment(tmp_path: Path) -> None:
    stack = synthesize(tmp_path, **IDS, aipmRestApiStage="prod")
    template = stack.json["Resources"]
    on_aipm = {
        logical_id: r
        for logical_id, r in template.items()
        if r["Properties"].get("RestApiId") == IDS["aipmRestApiId"]
    }
    shared = {k: r for k, r in on_aipm.items() if r["Type"] == "AWS::ApiGateway::Resource"}
    paths: dict[str, str] = {}

    def path_of(logical_id: str) -> str:
        props = shared[logical_id]["Properties"]
        parent = props["ParentId"]
        prefix = "/api" if parent == IDS["aipmApiResourceId"] else path_of(parent["Ref"])
        return f"{prefix}/{props['PathPart']}"

    for logical_id in shared:
        paths[logical_id] = path_of(logical_id)
    methods: dict[tuple[str, str], dict[str, Any]] = {
        (paths[r["Properties"]["ResourceId"]["Ref"]], r["Properties"]["HttpMethod"]): r["Properties"]
        for r in on_aipm.values()
        if r["Type"] == "AWS::ApiGateway::Method"
    }
    for route in (
        ("/api/personal-delegate", "POST"),
        ("/api/personal-delegate/status", "GET"),
        ("/api/delegate/personal", "POST"),
        ("/api/jobs", "GET"),
        ("/api/jobs/{proxy+}", "ANY"),
        ("/api/workers", "GET"),
    ):
        assert methods[route]["AuthorizationType"] == "COGNITO_USER_POOLS", route
        assert route[0].startswith("/api/") and (route[0], "OPTIONS") in methods  # CORS preflight
    (authorizer,) = [r for r in on_aipm.values() if r["Type"] == "AWS::ApiGateway::Authorizer"]
    assert authorizer["Properties"]["Type"] == "COGNITO_USER_POOLS"
    permissions = json.dumps(resources(stack.template, "AWS::Lambda::Permission"))
    assert f":{IDS['aipmRestApiId']}/" in permissions  # the AIPM API may invoke our Lambda
    (deployment,) = [r for r in template.values() if r["Type"] == "Custom::AWS"
                     and "createDeployment" in json.dumps(r["Properties"])]  # fmt: skip
    call = json.dumps(deployment["Properties"])
    assert IDS["aipmRestApiId"] in call and '\\"stageName\\":\\"prod\\"' in call
    method_ids = {k for k, r in on_aipm.items() if r["Type"] == "AWS::ApiGateway::Method"}
    assert method_ids <= set(deployment["DependsOn"])  # the stage is deployed after our routes exist
    assert "AipmDelegateUrl" in stack.json["Outputs"]
    lint = subprocess.run(
        [str(CFN_LINT), "--ignore-checks", "W3005", "--", str(stack.template_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout
