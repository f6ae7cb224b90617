"""A local stand-in for Amazon Cognito managed login (OAuth 2.0 + OpenID Connect), for the local stack.

Built on well-kept parts: moto's Cognito user-pool emulation keeps the people (users, groups, temporary
passwords, the forced password change, the MFA challenges), Authlib is the authorization server, joserfc
signs the tokens, pyotp checks TOTP codes (moto does not). The same endpoint paths as Cognito, so the web
console's and the CLI's sign-in code runs unchanged against both. See `aipm.local.oidc.server`.
"""

from aipm.local.oidc.server import OidcStandIn
from aipm.local.oidc.userpool import UserPool, create_pool

__all__ = ["OidcStandIn", "UserPool", "create_pool"]
