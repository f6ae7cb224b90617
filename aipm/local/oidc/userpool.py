"""The user pool behind the local sign-in: moto's emulation of Amazon Cognito user pools (cognito-idp).

The only module of the stand-in that talks to the emulator (boto3). moto keeps the users, their groups,
temporary passwords and the forced password change, and walks the same challenge sequence as Cognito
(`NEW_PASSWORD_REQUIRED` → `MFA_SETUP` → tokens; later `SOFTWARE_TOKEN_MFA`). It does not check TOTP codes
(moto's optional check uses one fixed secret for every user), so the stand-in checks them itself
(`aipm.local.oidc.server`) before it answers a challenge here.

Sources: Cognito API reference — InitiateAuth (USER_PASSWORD_AUTH), RespondToAuthChallenge,
AssociateSoftwareToken, VerifySoftwareToken, AdminCreateUser, DescribeUserPoolClient; moto
`moto/cognitoidp/models.py` (5.2) for what the emulator does of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

# Cognito's TokenValidityUnits → seconds (DescribeUserPoolClient; the defaults are hours/hours/days).
UNIT_S = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


class SignInRefused(Exception):
    """The pool refused a step of the sign-in; `message` is what a person is shown (Cognito's wording)."""

    def __init__(self, message: str, code: str = "NotAuthorizedException") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class AppClient:
    """The parts of a Cognito app client the authorization server enforces (DescribeUserPoolClient)."""

    client_id: str
    callback_urls: tuple[str, ...]
    logout_urls: tuple[str, ...]
    scopes: tuple[str, ...]
    flows: tuple[str, ...]
    id_token_s: int
    access_token_s: int
    refresh_token_s: int


@dataclass(frozen=True)
class PoolUser:
    """A signed-in person as the tokens describe them."""

    username: str
    sub: str
    email: str
    email_verified: bool
    groups: tuple[str, ...] = field(default_factory=tuple)

    def get_user_id(self) -> str:  # Authlib's user protocol
        return self.sub


@dataclass(frozen=True)
class Step:
    """What the pool asks next: a challenge name with its session, or `done` (the password part passed)."""

    challenge: str  # "NEW_PASSWORD_REQUIRED" | "MFA_SETUP" | "SOFTWARE_TOKEN_MFA" | "DONE"
    session: str
    username: str


class UserPool:
    """One Cognito user pool in the emulator at `endpoint_url`."""

    def __init__(self, user_pool_id: str, *, endpoint_url: str, region: str) -> None:
        self.user_pool_id = user_pool_id
        self.region = region
        self._idp = boto3.client(
            "cognito-idp",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - the local emulator accepts any key
        )

    # -- configuration ------------------------------------------------------------------------------

    def app_client(self, client_id: str) -> AppClient | None:
        """The app client `client_id` of this pool, or None if there is none."""
        try:
            desc = self._idp.describe_user_pool_client(UserPoolId=self.user_pool_id, ClientId=client_id)
        except ClientError as err:
            if _code(err) in ("ResourceNotFoundException", "InvalidParameterException"):
                return None
            raise
        c: Mapping[str, Any] = desc["UserPoolClient"]
        units: Mapping[str, str] = c.get("TokenValidityUnits") or {}

        def seconds(key: str, unit_key: str, default_unit: str, default: int) -> int:
            value = c.get(key)
            if value is None:
                return default
            return int(value) * UNIT_S[units.get(unit_key, default_unit)]

        return AppClient(
            client_id=client_id,
            callback_urls=tuple(c.get("CallbackURLs") or ()),
            logout_urls=tuple(c.get("LogoutURLs") or ()),
            scopes=tuple(c.get("AllowedOAuthScopes") or ()),
            flows=tuple(c.get("AllowedOAuthFlows") or ()),
            id_token_s=seconds("IdTokenValidity", "IdToken", "hours", 3600),
            access_token_s=seconds("AccessTokenValidity", "AccessToken", "hours", 3600),
            refresh_token_s=seconds("RefreshTokenValidity", "RefreshToken", "days", 30 * 86400),
        )

    def totp_required(self) -> bool:
        """Whether the pool requires TOTP MFA (MfaConfiguration ON with software tokens)."""
        mfa = self._idp.get_user_pool_mfa_config(UserPoolId=self.user_pool_id)
        software = mfa.get("SoftwareTokenMfaConfiguration") or {}
        return mfa.get("MfaConfiguration") == "ON" and bool(software.get("Enabled"))

    # -- people -------------------------------------------------------------------------------------

    def user(self, username: str) -> PoolUser | None:
        """The user with their attributes and groups; None if they are gone or disabled."""
        try:
            got = self._idp.admin_get_user(UserPoolId=self.user_pool_id, Username=username)
        except ClientError as err:
            if _code(err) == "UserNotFoundException":
                return None
            raise
        if not got.get("Enabled", True):
            return None
        attrs = {a["Name"]: a.get("Value", "") for a in got.get("UserAttributes", [])}
        groups = self._idp.admin_list_groups_for_user(UserPoolId=self.user_pool_id, Username=username)
        return PoolUser(
            username=got["Username"],
            sub=attrs.get("sub", ""),
            email=attrs.get("email", ""),
            email_verified=attrs.get("email_verified", "false").lower() == "true",
            groups=tuple(sorted(g["GroupName"] for g in groups.get("Groups", []))),
        )

    # -- the sign-in steps --------------------------------------------------------------------------

    def start(self, client_id: str, username: str, password: str) -> Step:
        """InitiateAuth with USER_PASSWORD_AUTH. Raises SignInRefused with Cognito's generic message for an
        unknown user or a wrong password alike (the pool prevents user-existence errors)."""
        try:
            resp = self._idp.initiate_auth(
                ClientId=client_id,
                AuthFlow="USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": username, "PASSWORD": password},
            )
        except ClientError as err:
            if _code(err) in ("NotAuthorizedException", "UserNotFoundException"):
                raise SignInRefused("Incorrect username or password.") from None
            if _code(err) == "UserNotConfirmedException":
                raise SignInRefused("User is not confirmed.", _code(err)) from None
            raise
        return self._step(resp, username)

    def new_password(self, client_id: str, step: Step, new_password: str) -> Step:
        """Answer NEW_PASSWORD_REQUIRED. Raises SignInRefused naming the password rule that failed."""
        try:
            resp = self._idp.respond_to_auth_challenge(
                ClientId=client_id,
                ChallengeName="NEW_PASSWORD_REQUIRED",
                Session=step.session,
                ChallengeResponses={"USERNAME": step.username, "NEW_PASSWORD": new_password},
            )
        except ClientError as err:
            if _code(err) == "InvalidPasswordException":
                raise SignInRefused(_message(err), _code(err)) from None
            raise
        return self._step(resp, step.username)

    def associate_totp(self, step: Step) -> Step:
        """AssociateSoftwareToken for an MFA_SETUP session (the emulator's secret is not used: the
        stand-in makes a secret per person and checks codes itself)."""
        resp = self._idp.associate_software_token(Session=step.session)
        return Step("MFA_SETUP", resp.get("Session") or step.session, step.username)

    def finish_totp_setup(self, client_id: str, step: Step, code: str) -> Step:
        """VerifySoftwareToken then answer MFA_SETUP; the code was checked by the caller."""
        verified = self._idp.verify_software_token(Session=step.session, UserCode=code)
        resp = self._idp.respond_to_auth_challenge(
            ClientId=client_id,
            ChallengeName="MFA_SETUP",
            Session=verified["Session"],
            ChallengeResponses={"USERNAME": step.username},
        )
        return self._step(resp, step.username)

    def answer_totp(self, client_id: str, step: Step, code: str) -> Step:
        """Answer SOFTWARE_TOKEN_MFA; the code was checked by the caller."""
        resp = self._idp.respond_to_auth_challenge(
            ClientId=client_id,
            ChallengeName="SOFTWARE_TOKEN_MFA",
            Session=step.session,
            ChallengeResponses={"USERNAME": step.username, "SOFTWARE_TOKEN_MFA_CODE": code},
        )
        return self._step(resp, step.username)

    @staticmethod
    def _step(resp: Mapping[str, Any], username: str) -> Step:
        if "AuthenticationResult" in resp:
            return Step("DONE", "", username)
        params = resp.get("ChallengeParameters") or {}
        return Step(resp["ChallengeName"], resp.get("Session", ""), params.get("USERNAME", username))


def create_pool(
    idp: Any,
    name: str,
    *,
    callback_urls: Sequence[str],
    logout_urls: Sequence[str],
    id_token_s: int = 3600,
) -> tuple[str, str]:
    """Create, in the emulator, the pool and app client the CDK app creates in the cloud: sign-in by
    e-mail, TOTP MFA required, an app client without a secret allowing the authorization-code flow with
    PKCE (enforced by the stand-in), `openid email profile`, refresh tokens. Returns (pool id, client id)."""
    pool = idp.create_user_pool(
        PoolName=name,
        MfaConfiguration="ON",
        UsernameAttributes=["email"],
        AutoVerifiedAttributes=["email"],
        Policies={
            "PasswordPolicy": {
                "MinimumLength": 12,
                "RequireUppercase": True,
                "RequireLowercase": True,
                "RequireNumbers": True,
                "RequireSymbols": True,
                "TemporaryPasswordValidityDays": 3,
            }
        },
    )["UserPool"]
    idp.set_user_pool_mfa_config(
        UserPoolId=pool["Id"],
        SoftwareTokenMfaConfiguration={"Enabled": True},
        MfaConfiguration="ON",
    )
    client = idp.create_user_pool_client(
        UserPoolId=pool["Id"],
        ClientName=f"{name}-frontend",
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["code"],
        AllowedOAuthScopes=["openid", "email", "profile"],
        SupportedIdentityProviders=["COGNITO"],
        CallbackURLs=list(callback_urls),
        LogoutURLs=list(logout_urls),
        IdTokenValidity=id_token_s,
        AccessTokenValidity=id_token_s,
        RefreshTokenValidity=30,
        TokenValidityUnits={"IdToken": "seconds", "AccessToken": "seconds", "RefreshToken": "days"},
        EnableTokenRevocation=True,
        PreventUserExistenceErrors="ENABLED",
    )["UserPoolClient"]
    return str(pool["Id"]), str(client["ClientId"])


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _message(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Message", "")) or _code(err)
