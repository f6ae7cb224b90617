"""`make cloud-smoke`'s AWS call sequence against the real moto server.

Named stubs where moto cannot stand in: `deploy_into_moto` plays the CDK CLI (it creates in moto what the
deployed stack's outputs point at: the user pool with TOTP required, the GitHub secret, the alarm topic, an
alarm and the dashboard, and a CloudFormation stack with the outputs), `ApiAndGitHub` plays the deployed API
and GitHub (the delegation, the job's progress, the PR's commits, closing the PR and deleting the branch).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from cdk.aipm_cdk import constants as c
from cdk.cloud_smoke import CloudSmoke, SmokeFailed, SmokeSettings
from tests.conftest import REGION

SETTINGS = SmokeSettings(
    stage="smoke1", repo="acme/smoke-test", cli_profile="kiro-interactive", github_token="ghp_s"
)
API = "https://abc123.execute-api.us-east-1.amazonaws.com/smoke1/"


@dataclass
class ApiAndGitHub:
    """The deployed API and GitHub, as the smoke test sees them over HTTP (a stub: neither runs here)."""

    final_status: str = "completed"
    calls: list[tuple[str, str]] = field(default_factory=list)
    polls: int = 0

    def __call__(self, method: str, url: str, *, token: str = "", body: object = None) -> Any:
        self.calls.append((method, url.replace(API.rstrip("/"), "API")))
        assert token
        if url.endswith("/api/personal-delegate"):
            assert isinstance(body, dict) and body["owner"] == "acme" and body["repo"] == "smoke-test"
            return {"jobId": "j1", "html_url": "https://github.com/acme/smoke-test/pull/7", "number": 7,
                    "branchName": "smoke/smoke1-1"}  # fmt: skip
        if "/api/jobs/" in url:
            self.polls += 1
            status = self.final_status if self.polls > 1 else "generating"
            return {"jobId": "j1", "status": status, "commitSha": "agent1", "reason": "because"}
        if url.endswith("/pulls/7/commits"):
            return [{"sha": "task0"}, {"sha": "agent1"}]
        return {}


@dataclass
class Moto:
    session: boto3.session.Session
    endpoint: str
    calls: list[str] = field(default_factory=list)

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint)  # type: ignore[call-overload]


@pytest.fixture
def moto(aws_endpoint: str) -> Iterator[Moto]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    recorded = Moto(session=session, endpoint=aws_endpoint)

    def record(model: Any, **_: Any) -> None:
        recorded.calls.append(f"{model.service_model.endpoint_prefix}:{model.name}")

    session.events.register("before-call", record)
    yield recorded


def deploy_into_moto(moto: Moto) -> Any:
    """The CDK CLI's part (a stub): what `cdk deploy` would have created, in moto."""

    def deploy(settings: SmokeSettings) -> None:
        idp = moto.client("cognito-idp")
        pool = idp.create_user_pool(PoolName=f"aipm-{settings.stage}", MfaConfiguration="OFF")["UserPool"][
            "Id"
        ]
        idp.set_user_pool_mfa_config(
            UserPoolId=pool, SoftwareTokenMfaConfiguration={"Enabled": True}, MfaConfiguration="ON"
        )
        secret = moto.client("secretsmanager").create_secret(
            Name=f"aipm/{settings.stage}/github-{pool[-6:]}", SecretString="{}"
        )["ARN"]
        topic = moto.client("sns").create_topic(Name=f"aipm-{settings.stage}-alarms")["TopicArn"]
        cloudwatch = moto.client("cloudwatch")
        cloudwatch.put_metric_alarm(
            AlarmName=f"{settings.stack_name}-FailedJobs",
            Namespace=c.METRIC_NAMESPACE,
            MetricName="FailedJobs",
            Statistic="Sum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            AlarmActions=[topic],
        )
        cloudwatch.put_dashboard(
            DashboardName=f"aipm-{settings.stage}", DashboardBody=json.dumps({"widgets": [{"type": "text"}]})
        )
        outputs = {
            c.OUT_API_URL: API,
            c.OUT_USER_POOL: pool,
            "GitHubSecretArn": secret,
            "AlarmTopicArn": topic,
        }
        template = {
            "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
        moto.client("cloudformation").create_stack(
            StackName=settings.stack_name, TemplateBody=json.dumps(template)
        )
        moto.calls.clear()  # the sequence under test starts after the deploy

    return deploy


def smoke(
    moto: Moto, api: ApiAndGitHub, destroyed: list[str], settings: SmokeSettings = SETTINGS
) -> CloudSmoke:
    return CloudSmoke(
        settings,
        session=moto.session,
        client_args={"endpoint_url": moto.endpoint},
        deploy=deploy_into_moto(moto),
        destroy=lambda s: destroyed.append(s.stack_name),
        http=api,
        say=lambda _line: None,
        sleep=lambda _s: None,
    )


def test_the_smoke_run_makes_these_aws_calls_in_this_order(moto: Moto) -> None:
    api, destroyed = ApiAndGitHub(), list[str]()
    run = smoke(moto, api, destroyed)
    run.run()
    assert moto.calls == [
        "cloudformation:DescribeStacks",
        "secretsmanager:PutSecretValue",
        "cognito-idp:CreateUserPoolClient",
        "cognito-idp:AdminCreateUser",
        "cognito-idp:AdminSetUserPassword",
        # moto answers a pool with MFA required with tokens at once; Cognito asks MFA_SETUP first, which
        # the run answers with AssociateSoftwareToken, VerifySoftwareToken and AdminRespondToAuthChallenge
        # (not exercised here: moto has no such challenge for this flow).
        "cognito-idp:AdminInitiateAuth",
        "cognito-idp:AdminDeleteUser",
        "cognito-idp:DeleteUserPoolClient",
        "monitoring:DescribeAlarms",
        "monitoring:GetDashboard",
    ]
    assert [call for call in api.calls if "github" not in call[1]] == [
        ("POST", "API/api/personal-delegate"),
        ("GET", "API/api/jobs/j1"),
        ("GET", "API/api/jobs/j1"),
    ]
    assert ("PATCH", "https://api.github.com/repos/acme/smoke-test/pulls/7") in api.calls
    assert (
        "DELETE",
        "https://api.github.com/repos/acme/smoke-test/git/refs/heads/smoke/smoke1-1",
    ) in api.calls
    assert destroyed == ["Aipm-smoke1"]
    secret = moto.client("secretsmanager").get_secret_value(SecretId=run.outputs["GitHubSecretArn"])
    assert json.loads(secret["SecretString"]) == {"token": "ghp_s"}
    pool = run.outputs[c.OUT_USER_POOL]
    assert moto.client("cognito-idp").list_users(UserPoolId=pool)["Users"] == []  # the person is gone
    assert (
        moto.client("cognito-idp").list_user_pool_clients(UserPoolId=pool, MaxResults=10)["UserPoolClients"]
        == []
    )


def test_a_failed_job_fails_the_run_and_the_stage_is_still_destroyed(moto: Moto) -> None:
    api, destroyed = ApiAndGitHub(final_status="failed"), list[str]()
    with pytest.raises(SmokeFailed, match="ended failed: because"):
        smoke(moto, api, destroyed, SmokeSettings(**{**SETTINGS.__dict__, "stage": "smoke2"})).run()
    assert destroyed == ["Aipm-smoke2"]
    assert "cognito-idp:AdminDeleteUser" in moto.calls  # the temporary person is removed on failure too
