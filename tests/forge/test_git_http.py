"""Git smart HTTP via `git http-backend`: real clone and push, credentials only from a credential helper."""

from __future__ import annotations

import base64
from pathlib import Path

from aipm.local.forge import Forge
from tests.forge.support import OWNER, TOKEN, GitClient, Repo, call, new_repository

UPLOAD_PACK_REFS = "/info/refs?service=git-upload-pack"


def clone(forge: Forge, repo: Repo, tmp_path: Path) -> tuple[GitClient, Path]:
    git = GitClient(tmp_path / "home", token=TOKEN)
    work = tmp_path / "work"
    git.run("clone", "--quiet", forge.clone_url(OWNER, repo.name), str(work))
    return git, work


def commit(git: GitClient, work: Path, name: str, text: str) -> str:
    (work / name).write_text(text, encoding="utf-8")
    git.run("add", name, cwd=work)
    git.run("commit", "--quiet", "-m", f"Add {name}", cwd=work)
    return git.run("rev-parse", "HEAD", cwd=work).stdout.strip()


def test_clone_commit_and_push_with_the_token_from_a_credential_helper(forge: Forge, tmp_path: Path) -> None:
    repo = new_repository(forge)
    git, work = clone(forge, repo, tmp_path)
    assert (work / "README.md").is_file()

    tip = commit(git, work, "feature.txt", "new feature\n")
    git.run("push", "--quiet", "origin", "HEAD:refs/heads/feature/export", cwd=work)

    assert forge.branches(OWNER, repo.name)["feature/export"] == tip
    remote = git.run("remote", "get-url", "origin", cwd=work).stdout.strip()
    assert remote == forge.clone_url(OWNER, repo.name)
    assert TOKEN not in remote
    assert TOKEN not in (work / ".git" / "config").read_text(encoding="utf-8")


def test_pull_request_head_follows_pushes(forge: Forge, tmp_path: Path) -> None:
    repo = new_repository(forge)
    git, work = clone(forge, repo, tmp_path)
    commit(git, work, "one.txt", "1\n")
    git.run("push", "--quiet", "origin", "HEAD:refs/heads/work", cwd=work)
    pulls = f"/api/v3/repos/{OWNER}/{repo.name}/pulls"
    created = call(forge, "POST", pulls, {"title": "Work", "head": "work", "base": "main"})
    assert created.status == 201

    second = commit(git, work, "two.txt", "2\n")
    git.run("push", "--quiet", "origin", "HEAD:refs/heads/work", cwd=work)

    now = call(forge, "GET", f"{pulls}/{created.body['number']}")
    assert now.body["head"]["sha"] == second
    assert forge.pull_requests(OWNER, repo.name)[0]["head"]["sha"] == second


def test_push_without_credentials_is_rejected(forge: Forge, tmp_path: Path) -> None:
    repo = new_repository(forge)
    _, work = clone(forge, repo, tmp_path)
    anonymous = GitClient(tmp_path / "anonymous", token=None)
    commit(anonymous, work, "sneaky.txt", "x\n")

    pushed = anonymous.run("push", "origin", "HEAD:refs/heads/sneaky", cwd=work, check=False)

    assert pushed.returncode != 0
    assert "sneaky" not in forge.branches(OWNER, repo.name)


def test_push_with_a_wrong_token_is_rejected(forge: Forge, tmp_path: Path) -> None:
    repo = new_repository(forge)
    _, work = clone(forge, repo, tmp_path)
    impostor = GitClient(tmp_path / "impostor", token="ghp_NotTheToken00000000000000000000000000")
    commit(impostor, work, "sneaky.txt", "x\n")

    pushed = impostor.run("push", "origin", "HEAD:refs/heads/sneaky", cwd=work, check=False)

    assert pushed.returncode != 0
    assert "Authentication failed" in pushed.stderr
    assert "sneaky" not in forge.branches(OWNER, repo.name)


def test_git_needs_basic_auth_and_challenges_for_it(forge: Forge) -> None:
    repo = new_repository(forge)
    path = f"/{OWNER}/{repo.name}.git{UPLOAD_PACK_REFS}"

    anonymous = call(forge, "GET", path, token=None)
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    authorised = call(forge, "GET", path, token=basic, scheme="Basic")

    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="forge"'
    assert authorised.status == 200
    assert authorised.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"


def test_only_the_smart_protocol_of_existing_repositories_is_served(forge: Forge) -> None:
    repo = new_repository(forge)
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()

    dumb = call(forge, "GET", f"/{OWNER}/{repo.name}.git/info/refs", token=basic, scheme="Basic")
    missing = call(forge, "GET", f"/{OWNER}/nothing.git{UPLOAD_PACK_REFS}", token=basic, scheme="Basic")
    objects = call(forge, "GET", f"/{OWNER}/{repo.name}.git/HEAD", token=basic, scheme="Basic")

    assert (dumb.status, missing.status, objects.status) == (403, 404, 404)
