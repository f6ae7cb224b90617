"""`make cloud-smoke STAGE=…`: deploy a throwaway stage, send one task through it, check it, destroy it.

Steps (each printed as it runs; the first failure stops the run, and the stage is destroyed in any case
unless `--keep`):

1. `cdk deploy Aipm-<stage>` with the pinned CDK CLI (`-c stage=<stage> -c retainData=false
   -c githubOwners=<owner> -c cliProfile=<profile>`), then the stack's outputs (CloudFormation
   DescribeStacks).
2. The GitHub token into the stack's secret (Secrets Manager PutSecretValue); for `kiro-headless`, the Kiro
   API key into `/etc/aipm/kiro.env` on the host and the agent restarted (SSM SendCommand).
3. A signed-in person: a temporary app client allowing ADMIN_USER_PASSWORD_AUTH and a temporary user
   (cognito-idp CreateUserPoolClient, AdminCreateUser, AdminSetUserPassword, AdminInitiateAuth), enrolled in
   TOTP as the pool requires (AssociateSoftwareToken, VerifySoftwareToken, RespondToAuthChallenge; the codes
   from `cryptography`'s TOTP), whose ID token the API's Cognito authorizer accepts.
4. `POST /api/personal-delegate` for the test repository, then `GET /api/jobs/{id}` until the job ends: it
   must be `completed`, and the PR must hold the agent's commit after the API's TASK.md commit (GitHub).
5. The alarms of the stage (CloudWatch DescribeAlarms): none in ALARM; the dashboard exists (GetDashboard).
6. Clean up: the PR closed and its branch deleted (GitHub), the user and the client deleted
   (AdminDeleteUser, DeleteUserPoolClient), `cdk destroy --force`.

Needs AWS credentials for the target account (`AWS_PROFILE`, `AWS_REGION`), `AIPM_SMOKE_GITHUB_TOKEN` (a token
with Contents and Pull requests on the test repository) and, for `kiro-headless`, `AIPM_SMOKE_KIRO_API_KEY`.
`tests/cdk/test_cloud_smoke.py` runs it against a moto server (its AWS call sequence) with named stubs for
what moto cannot be: the CDK CLI, the deployed API and GitHub.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from cdk.aipm_cdk import constants as c

CDK_CLI = c.REPO_ROOT / "cdk" / "node_modules" / ".bin" / "cdk"
JOB_TIMEOUT_S = 1800
POLL_S = 10
TERMINAL = {"completed", "failed", "timed_out", "cancelled", "no_changes"}


class SmokeFailed(RuntimeError):
    """A check of the smoke test failed; the message says which and what was seen."""


@dataclass(frozen=True)
class SmokeSettings:
    stage: str
    repo: str  # owner/name of the test repository
    cli_profile: str
    github_token: str
    kiro_api_key: str = ""
    github_api_url: str = c.DEFAULT_GITHUB_API_URL
    keep: bool = False

    @property
    def stack_name(self) -> str:
        return f"Aipm-{self.stage}"


def run_cdk(args: Sequence[str]) -> None:
    """The pinned CDK CLI from the repository root (cdk.json), output streamed. Raises SmokeFailed."""
    result = subprocess.run([str(CDK_CLI), *args], cwd=c.REPO_ROOT, check=False)
    if result.returncode != 0:
        raise SmokeFailed(f"cdk {args[0]} failed ({result.returncode})")


def http_json(method: str, url: str, *, token: str = "", body: object = None, scheme: str = "Bearer") -> Any:
    """One JSON request; returns the decoded answer. Raises SmokeFailed with the status and body."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"{scheme} {token}"
    if method == "POST":
        headers["Idempotency-Key"] = uuid.uuid4().hex
    if not url.startswith("https://"):
        raise SmokeFailed(f"refusing a non-https URL: {url}")
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - https URLs of the stack
            raw = resp.read()
    except urllib.error.HTTPError as err:
        raise SmokeFailed(f"{method} {url}: {err.code} {err.read()[:500]!r}") from None
    return json.loads(raw) if raw else None


@dataclass
class CloudSmoke:
    """The run; `deploy`/`destroy` and `http` are replaceable (tests), the AWS clients come from `session`."""

    settings: SmokeSettings
    session: Any = field(default_factory=boto3.session.Session)
    client_args: Mapping[str, Any] = field(default_factory=dict)
    deploy: Callable[[SmokeSettings], None] | None = None
    destroy: Callable[[SmokeSettings], None] | None = None
    http: Callable[..., Any] = http_json
    say: Callable[[str], None] = print
    sleep: Callable[[float], None] = time.sleep
    outputs: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return self.session.client(service, **self.client_args)

    def run(self) -> None:
        """All steps; the stage is destroyed at the end, also after a failure (unless `keep`)."""
        try:
            self.say(f"deploying {self.settings.stack_name}")
            (self.deploy or cdk_deploy)(self.settings)
            self.read_outputs()
            self.configure()
            token, cleanup = self.sign_in()
            try:
                job = self.delegate(token)
                self.check_pull_request(job)
            finally:
                cleanup()
            self.check_monitoring()
        finally:
            if not self.settings.keep:
                self.say(f"destroying {self.settings.stack_name}")
                (self.destroy or cdk_destroy)(self.settings)

    def read_outputs(self) -> None:
        stacks = self.client("cloudformation").describe_stacks(StackName=self.settings.stack_name)["Stacks"]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        missing = {c.OUT_API_URL, c.OUT_USER_POOL, "GitHubSecretArn", "AlarmTopicArn"} - set(self.outputs)
        if missing:
            raise SmokeFailed(f"the stack has no output {sorted(missing)}")

    def configure(self) -> None:
        self.say("storing the GitHub token")
        self.client("secretsmanager").put_secret_value(
            SecretId=self.outputs["GitHubSecretArn"],
            SecretString=json.dumps({"token": self.settings.github_token}),
        )
        if self.settings.cli_profile != "kiro-headless":
            return
        self.say("giving the host its Kiro API key")
        instance = self.outputs.get(c.OUT_INSTANCE)
        if not instance:
            raise SmokeFailed("kiro-headless smoke runs need the single-host deployment (AgentInstanceId)")
        script = (
            "umask 077 && printf 'KIRO_API_KEY=%s\\n' \"$KEY\" > /etc/aipm/kiro.env && "
            "systemctl restart aipm-agent"
        )
        self.client("ssm").send_command(
            InstanceIds=[instance],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": [f"KEY='{self.settings.kiro_api_key}' bash -c '{script}'"]},
        )

    def sign_in(self) -> tuple[str, Callable[[], None]]:
        """A temporary person and client; returns the ID token and the cleanup."""
        idp = self.client("cognito-idp")
        pool = self.outputs[c.OUT_USER_POOL]
        client_id = idp.create_user_pool_client(
            UserPoolId=pool,
            ClientName=f"aipm-smoke-{uuid.uuid4().hex[:8]}",
            GenerateSecret=False,
            ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]["ClientId"]
        user = f"smoke-{uuid.uuid4().hex[:8]}@example.invalid"
        password = f"Sm0ke!{uuid.uuid4().hex}"

        def cleanup() -> None:
            idp.admin_delete_user(UserPoolId=pool, Username=user)
            idp.delete_user_pool_client(UserPoolId=pool, ClientId=client_id)

        self.say(f"signing in as a temporary person {user}")
        idp.admin_create_user(
            UserPoolId=pool,
            Username=user,
            UserAttributes=[{"Name": "email", "Value": user}, {"Name": "email_verified", "Value": "true"}],
            MessageAction="SUPPRESS",
        )
        try:
            idp.admin_set_user_password(UserPoolId=pool, Username=user, Password=password, Permanent=True)
            auth = idp.admin_initiate_auth(
                UserPoolId=pool,
                ClientId=client_id,
                AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": user, "PASSWORD": password},
            )
            if auth.get("ChallengeName") == "MFA_SETUP":  # the pool requires TOTP: enrol this person
                secret = idp.associate_software_token(Session=auth["Session"])
                code = totp_now(secret["SecretCode"])
                verified = idp.verify_software_token(Session=secret["Session"], UserCode=code)
                auth = idp.admin_respond_to_auth_challenge(
                    UserPoolId=pool,
                    ClientId=client_id,
                    ChallengeName="MFA_SETUP",
                    Session=verified["Session"],
                    ChallengeResponses={"USERNAME": user},
                )
            if "AuthenticationResult" not in auth:
                raise SmokeFailed(f"sign-in stopped at the challenge {auth.get('ChallengeName')}")
        except BaseException:
            cleanup()
            raise
        return str(auth["AuthenticationResult"]["IdToken"]), cleanup

    def delegate(self, token: str) -> dict[str, Any]:
        owner, repo = self.settings.repo.split("/", 1)
        base = self.outputs[c.OUT_API_URL].rstrip("/")
        title = f"Cloud smoke {self.settings.stage} {time.strftime('%Y%m%d-%H%M%S')}"
        answer = self.http(
            "POST",
            f"{base}/api/personal-delegate",
            token=token,
            body={
                "owner": owner,
                "repo": repo,
                "branchName": f"smoke/{self.settings.stage}",
                "taskTitle": title,
                "objective": "Add docs/cloud-smoke.md with one line saying the cloud smoke test ran.",
                "prTitle": title,
                "constraints": "Change only docs/cloud-smoke.md.",
                "acceptanceCriteria": ["docs/cloud-smoke.md exists"],
            },
        )
        self.say(f"job {answer['jobId']}: PR {answer.get('html_url')}")
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while True:
            job: dict[str, Any] = self.http("GET", f"{base}/api/jobs/{answer['jobId']}", token=token)
            if job["status"] in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise SmokeFailed(f"job {answer['jobId']} still {job['status']} after {JOB_TIMEOUT_S} s")
            self.sleep(POLL_S)
        if job["status"] != "completed":
            raise SmokeFailed(f"job {answer['jobId']} ended {job['status']}: {job.get('reason')}")
        return {**answer, **job}

    def check_pull_request(self, job: Mapping[str, Any]) -> None:
        owner, repo = self.settings.repo.split("/", 1)
        api = f"{self.settings.github_api_url}/repos/{owner}/{repo}"
        number = job["number"] if "number" in job else job["prNumber"]
        try:
            commits = self.http("GET", f"{api}/pulls/{number}/commits", token=self.settings.github_token)
            shas = [commit["sha"] for commit in commits]
            if len(shas) < 2 or job.get("commitSha") not in shas:
                raise SmokeFailed(f"PR #{number} lacks the agent's commit {job.get('commitSha')}: {shas}")
            self.say(f"PR #{number} has the agent's commit {job['commitSha']}")
        finally:
            self.http(
                "PATCH", f"{api}/pulls/{number}", token=self.settings.github_token, body={"state": "closed"}
            )
            self.http("DELETE", f"{api}/git/refs/heads/{job['branchName']}", token=self.settings.github_token)

    def check_monitoring(self) -> None:
        cloudwatch = self.client("cloudwatch")
        topic = self.outputs["AlarmTopicArn"]
        alarms = [
            alarm
            for page in cloudwatch.get_paginator("describe_alarms").paginate()
            for alarm in page["MetricAlarms"]
            if topic in alarm.get("AlarmActions", [])
        ]
        if not alarms:
            raise SmokeFailed("the stage has no alarms on its topic")
        firing = [a["AlarmName"] for a in alarms if a["StateValue"] == "ALARM"]
        if firing:
            raise SmokeFailed(f"alarms in ALARM: {firing}")
        dashboard = cloudwatch.get_dashboard(DashboardName=f"{c.PROJECT}-{self.settings.stage}")
        if not json.loads(dashboard["DashboardBody"]).get("widgets"):
            raise SmokeFailed("the dashboard has no widgets")
        self.say(f"{len(alarms)} alarms, none in ALARM; the dashboard has its widgets")


def totp_now(secret_base32: str) -> str:
    """The current 6-digit TOTP code (RFC 6238, 30 s, SHA-1: what Cognito's software tokens use)."""
    import base64

    key = base64.b32decode(secret_base32 + "=" * (-len(secret_base32) % 8))
    # SHA-1 is what RFC 6238 authenticators (and Cognito) use for TOTP; here an HMAC key, not a digest.
    return TOTP(key, 6, SHA1(), 30, enforce_key_length=False).generate(time.time()).decode()  # noqa: S303


def cdk_deploy(settings: SmokeSettings) -> None:
    run_cdk(
        [
            "deploy",
            settings.stack_name,
            "--require-approval",
            "never",
            "-c",
            f"stage={settings.stage}",
            "-c",
            "retainData=false",
            "-c",
            f"githubOwners={settings.repo.split('/', 1)[0]}",
            "-c",
            f"cliProfile={settings.cli_profile}",
        ]
    )


def cdk_destroy(settings: SmokeSettings) -> None:
    run_cdk(["destroy", settings.stack_name, "--force", "-c", f"stage={settings.stage}"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloud-smoke", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stage", required=True, help="a throwaway stage name, e.g. smoke1")
    parser.add_argument("--repo", required=True, help="owner/name of a test repository")
    parser.add_argument("--cli-profile", default="kiro-headless", help="the agent's CLI profile")
    parser.add_argument("--keep", action="store_true", help="do not destroy the stage at the end")
    args = parser.parse_args(argv)
    token = os.environ.get("AIPM_SMOKE_GITHUB_TOKEN", "")
    if not token:
        parser.error("AIPM_SMOKE_GITHUB_TOKEN is required (a token with access to --repo)")
    settings = SmokeSettings(
        stage=args.stage,
        repo=args.repo,
        cli_profile=args.cli_profile,
        github_token=token,
        kiro_api_key=os.environ.get("AIPM_SMOKE_KIRO_API_KEY", ""),
        keep=args.keep,
    )
    if settings.cli_profile == "kiro-headless" and not settings.kiro_api_key:
        parser.error("AIPM_SMOKE_KIRO_API_KEY is required for the kiro-headless profile")
    try:
        CloudSmoke(settings).run()
    except SmokeFailed as err:
        print(f"cloud smoke FAILED: {err}", file=sys.stderr)
        return 1
    print("cloud smoke passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
