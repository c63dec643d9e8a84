"""A small, real HTTP server speaking the slice of GitHub's REST API that the sidecar uses
through PyGithub: repositories, git refs, contents (blobs and commits), pull requests.

State is in memory (commits hold whole trees: {path: text}).  Faults can be injected per
method and path: an HTTP status, a 403 rate limit with ``X-RateLimit-Reset``, a response
delayed after the request was processed (the client times out, the change happened), or a
request that hangs unprocessed until released (the client is killed meanwhile).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


def _sha(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Rule:
    method: str
    path: re.Pattern
    action: str                      # status | rate_limit | delay_after | hang
    times: int = 1
    status: int = 500
    seconds: float = 0.0
    reset_in: float = 30.0
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Repo:
    owner: str
    name: str
    default_branch: str = "main"
    refs: dict = field(default_factory=dict)        # branch -> commit sha
    commits: dict = field(default_factory=dict)     # sha -> {"tree": {path: text}, "parent": sha, "message": str}
    pulls: list = field(default_factory=list)

    @property
    def full(self) -> str:
        return f"{self.owner}/{self.name}"


class FakeGitHub:
    def __init__(self, token: str = "ghp_test_token", owner: str = "acme", name: str = "app"):
        self.token = token
        self.lock = threading.RLock()
        self.repos: dict[str, Repo] = {}
        self.rules: list[Rule] = []
        self.log: list[tuple[str, str, int]] = []   # (method, path, status)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="fake-github", daemon=True)
        repo = self.add_repo(owner, name)
        self.commit(repo, "main", {"README.md": "# app\n"}, "initial commit")

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeGitHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        for r in self.rules:
            r.release.set()
        self.server.shutdown()
        self.server.server_close()

    # -- state helpers for tests ------------------------------------------------------------
    def add_repo(self, owner: str, name: str) -> Repo:
        repo = Repo(owner, name)
        self.repos[repo.full] = repo
        return repo

    @property
    def repo(self) -> Repo:
        return next(iter(self.repos.values()))

    def commit(self, repo: Repo, branch: str, changes: dict, message: str) -> str:
        with self.lock:
            parent = repo.refs.get(branch)
            tree = dict(repo.commits[parent]["tree"]) if parent else {}
            tree.update(changes)
            sha = _sha(parent or "", json.dumps(tree, sort_keys=True), message, str(time.monotonic_ns()))
            repo.commits[sha] = {"tree": tree, "parent": parent, "message": message}
            repo.refs[branch] = sha
            return sha

    def files(self, branch: str, repo: Repo | None = None) -> dict:
        repo = repo or self.repo
        with self.lock:
            return dict(repo.commits[repo.refs[branch]]["tree"])

    def branches(self, repo: Repo | None = None) -> list[str]:
        return sorted((repo or self.repo).refs)

    def pulls(self, repo: Repo | None = None) -> list[dict]:
        return list((repo or self.repo).pulls)

    def merge(self, number: int, repo: Repo | None = None) -> None:
        repo = repo or self.repo
        with self.lock:
            pr = next(p for p in repo.pulls if p["number"] == number)
            self.commit(repo, pr["base"], self.files(pr["head"], repo), f"Merge pull request #{number}")
            pr.update(state="closed", merged=True, merged_at=_now(), closed_at=_now())

    def close(self, number: int, repo: Repo | None = None) -> None:
        repo = repo or self.repo
        with self.lock:
            pr = next(p for p in repo.pulls if p["number"] == number)
            pr.update(state="closed", closed_at=_now())

    def calls(self, method: str, pattern: str) -> int:
        rx = re.compile(pattern)
        return sum(1 for m, p, _ in self.log if m == method and rx.search(p))

    # -- fault injection ---------------------------------------------------------------------
    def fail(self, method: str, path: str, status: int = 500, times: int = 1) -> Rule:
        return self._rule(Rule(method, re.compile(path), "status", times=times, status=status))

    def rate_limit(self, method: str, path: str, reset_in: float, times: int = 1) -> Rule:
        return self._rule(Rule(method, re.compile(path), "rate_limit", times=times, reset_in=reset_in))

    def delay_after(self, method: str, path: str, seconds: float, times: int = 1) -> Rule:
        """Process the request, then wait ``seconds`` before answering."""
        return self._rule(Rule(method, re.compile(path), "delay_after", times=times, seconds=seconds))

    def hang(self, method: str, path: str, times: int = 1) -> Rule:
        """Hold the request unprocessed until ``rule.release`` is set; then drop the connection."""
        return self._rule(Rule(method, re.compile(path), "hang", times=times))

    def _rule(self, rule: Rule) -> Rule:
        with self.lock:
            self.rules.append(rule)
        return rule

    def _match(self, method: str, path: str) -> Rule | None:
        with self.lock:
            for r in self.rules:
                if r.times > 0 and r.method == method and r.path.search(path):
                    r.times -= 1
                    return r
        return None

    # -- the API -----------------------------------------------------------------------------
    def _pr_json(self, repo: Repo, pr: dict, full: bool = True) -> dict:
        api = f"{self.url}/repos/{repo.full}"
        out = {"id": pr["number"], "number": pr["number"], "state": pr["state"], "title": pr["title"],
               "body": pr["body"], "html_url": f"{self.url}/{repo.full}/pull/{pr['number']}",
               "url": f"{api}/pulls/{pr['number']}", "created_at": pr["created_at"],
               "merged_at": pr.get("merged_at"), "closed_at": pr.get("closed_at"),
               "head": {"ref": pr["head"], "sha": repo.refs.get(pr["head"]), "label": f"{repo.owner}:{pr['head']}"},
               "base": {"ref": pr["base"], "sha": repo.refs.get(pr["base"]), "label": f"{repo.owner}:{pr['base']}"}}
        if full:  # like GitHub: the list endpoint has no "merged"
            out["merged"] = bool(pr.get("merged"))
        return out

    def _file_json(self, repo: Repo, path: str, text: str) -> dict:
        data = text.encode()
        return {"type": "file", "encoding": "base64", "content": base64.b64encode(data).decode(),
                "sha": _sha("blob", text), "path": path, "name": path.rsplit("/", 1)[-1], "size": len(data),
                "url": f"{self.url}/repos/{repo.full}/contents/{path}"}

    def _ref_json(self, repo: Repo, branch: str) -> dict:
        return {"ref": f"refs/heads/{branch}", "url": f"{self.url}/repos/{repo.full}/git/refs/heads/{branch}",
                "object": {"sha": repo.refs[branch], "type": "commit",
                           "url": f"{self.url}/repos/{repo.full}/git/commits/{repo.refs[branch]}"}}

    def handle(self, method: str, path: str, query: dict, body: dict) -> tuple[int, object]:
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)(/.*)?", path)
        if not m or f"{m.group(1)}/{m.group(2)}" not in self.repos:
            return 404, {"message": "Not Found"}
        repo = self.repos[f"{m.group(1)}/{m.group(2)}"]
        rest = m.group(3) or ""
        q = {k: v[0] for k, v in query.items()}
        with self.lock:
            if rest == "" and method == "GET":
                return 200, {"id": 1, "name": repo.name, "full_name": repo.full, "default_branch": repo.default_branch,
                             "owner": {"login": repo.owner, "type": "Organization"},
                             "url": f"{self.url}/repos/{repo.full}", "html_url": f"{self.url}/{repo.full}"}
            m2 = re.fullmatch(r"/git/ref/heads/(.+)", rest)
            if m2 and method == "GET":
                branch = m2.group(1)
                if branch not in repo.refs:
                    return 404, {"message": "Not Found"}
                return 200, self._ref_json(repo, branch)
            if rest == "/git/refs" and method == "POST":
                ref, sha = body.get("ref", ""), body.get("sha", "")
                if not ref.startswith("refs/heads/"):
                    return 422, {"message": "Reference name must start with refs/heads/"}
                branch = ref[len("refs/heads/"):]
                if branch in repo.refs:
                    return 422, {"message": "Reference already exists"}
                if sha not in repo.commits:
                    return 422, {"message": "Object does not exist"}
                repo.refs[branch] = sha
                return 201, self._ref_json(repo, branch)
            m2 = re.fullmatch(r"/contents/(.+)", rest)
            if m2:
                fpath = m2.group(1)
                if method == "GET":
                    branch = q.get("ref", repo.default_branch)
                    if branch not in repo.refs:
                        return 404, {"message": "No commit found for the ref " + branch}
                    tree = repo.commits[repo.refs[branch]]["tree"]
                    if fpath in tree:
                        return 200, self._file_json(repo, fpath, tree[fpath])
                    if any(p.startswith(fpath + "/") for p in tree):
                        return 200, [self._file_json(repo, p, t) for p, t in tree.items() if p.startswith(fpath + "/")]
                    return 404, {"message": "Not Found"}
                if method == "PUT":
                    branch = body.get("branch", repo.default_branch)
                    if branch not in repo.refs:
                        return 404, {"message": "Branch not found"}
                    text = base64.b64decode(body["content"]).decode()
                    tree = repo.commits[repo.refs[branch]]["tree"]
                    if fpath in tree:
                        if not body.get("sha"):
                            return 422, {"message": 'Invalid request.\n\n"sha" wasn\'t supplied.'}
                        if body["sha"] != _sha("blob", tree[fpath]):
                            return 409, {"message": f"{fpath} does not match {body['sha']}"}
                    status = 200 if fpath in tree else 201
                    sha = self.commit(repo, branch, {fpath: text}, body.get("message", ""))
                    return status, {"content": self._file_json(repo, fpath, text),
                                    "commit": {"sha": sha, "url": f"{self.url}/repos/{repo.full}/git/commits/{sha}",
                                               "html_url": f"{self.url}/{repo.full}/commit/{sha}",
                                               "message": body.get("message", "")}}
            if rest == "/pulls" and method == "GET":
                state = q.get("state", "open")
                out = []
                for pr in repo.pulls:
                    if state != "all" and pr["state"] != state:
                        continue
                    if "head" in q and f"{repo.owner}:{pr['head']}" != q["head"]:
                        continue
                    if "base" in q and pr["base"] != q["base"]:
                        continue
                    out.append(self._pr_json(repo, pr, full=False))
                return 200, out
            if rest == "/pulls" and method == "POST":
                head, base = body.get("head", ""), body.get("base", "")
                if head not in repo.refs or base not in repo.refs:
                    return 422, {"message": "Validation Failed",
                                 "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}]}
                if any(p["head"] == head and p["base"] == base and p["state"] == "open" for p in repo.pulls):
                    return 422, {"message": "Validation Failed", "errors": [
                        {"resource": "PullRequest", "code": "custom",
                         "message": f"A pull request already exists for {repo.owner}:{head}."}]}
                if repo.refs[head] == repo.refs[base]:
                    return 422, {"message": "Validation Failed", "errors": [
                        {"resource": "PullRequest", "code": "custom", "message": f"No commits between {base} and {head}"}]}
                pr = {"number": len(repo.pulls) + 1, "state": "open", "title": body.get("title", ""),
                      "body": body.get("body", ""), "head": head, "base": base, "created_at": _now()}
                repo.pulls.append(pr)
                return 201, self._pr_json(repo, pr)
            m2 = re.fullmatch(r"/pulls/(\d+)", rest)
            if m2 and method == "GET":
                pr = next((p for p in repo.pulls if p["number"] == int(m2.group(1))), None)
                if pr is None:
                    return 404, {"message": "Not Found"}
                return 200, self._pr_json(repo, pr)
        return 404, {"message": f"Not Found ({method} {rest})"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, payload, headers: dict | None = None):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _serve(self, method: str):
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                auth = self.headers.get("Authorization", "")
                if auth not in (f"token {fake.token}", f"Bearer {fake.token}"):
                    fake.log.append((method, path, 401))
                    return self._send(401, {"message": "Bad credentials"})
                rule = fake._match(method, path)
                if rule is not None and rule.action == "hang":
                    rule.arrived.set()
                    rule.release.wait(60)
                    fake.log.append((method, path, 0))
                    self.close_connection = True
                    return None
                if rule is not None and rule.action == "status":
                    fake.log.append((method, path, rule.status))
                    return self._send(rule.status, {"message": f"injected {rule.status}"})
                if rule is not None and rule.action == "rate_limit":
                    fake.log.append((method, path, 403))
                    reset = int(time.time() + rule.reset_in)
                    return self._send(403, {"message": "API rate limit exceeded for user ID 1."},
                                      {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0",
                                       "X-RateLimit-Reset": str(reset)})
                status, payload = fake.handle(method, path, parse_qs(parts.query), body)
                fake.log.append((method, path, status))
                if rule is not None and rule.action == "delay_after":
                    time.sleep(rule.seconds)
                return self._send(status, payload, {"X-RateLimit-Remaining": "4999"})

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_PUT(self):
                self._serve("PUT")

            def do_PATCH(self):
                self._serve("PATCH")

        return Handler
