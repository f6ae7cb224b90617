"""GitHub client used by the Lambda and the agent (REST + GraphQL, github.com, GHE and the local forge)."""

from lambda_src.github.client import GitHubClient, PullRequest
from lambda_src.github.transport import RetryPolicy

__all__ = ["GitHubClient", "PullRequest", "RetryPolicy"]
