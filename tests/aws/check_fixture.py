#!/usr/bin/env python3
"""Self-check for moto_fixture.py: proves the fixture keeps the contract the Rust tests
rely on (README.md), and that the moto facts the README states still hold for the
installed moto. Run by CI; exits non-zero on any failure.

    python3 tests/aws/check_fixture.py
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

os.environ.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IAM", "AWS_SESSION_TOKEN"):
    os.environ.pop(_var, None)

import boto3  # noqa: E402
import botocore.config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "moto_fixture.py"
SMOKE = HERE / "scenarios" / "smoke.json"
ACCOUNT = "123456789012"
READY_FIELDS = {"endpoint", "proxy", "account", "keys", "users", "roles", "principals"}
# The fixture measures "N days ago" from its own clock at seeding time; we compare from
# ours a few seconds later.
TOLERANCE = dt.timedelta(minutes=2)

failures: list[str] = []


def check(cond: Any, what: str) -> bool:
    if not cond:
        failures.append(what)
        print(f"  FAIL {what}", file=sys.stderr)
    return bool(cond)


def equal(got: Any, want: Any, what: str) -> bool:
    return check(got == want, f"{what}: got {got!r}, want {want!r}")


def ago(days: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)


def about(got: Any, days: float, what: str) -> bool:
    """got (datetime or credential-report string) is N days before now."""
    if isinstance(got, str):
        try:
            got = dt.datetime.fromisoformat(got)
        except ValueError:
            return check(False, f"{what}: {got!r} is not a timestamp")
    return check(isinstance(got, dt.datetime) and abs(got - ago(days)) < TOLERANCE,
                 f"{what}: got {got!r}, want about {days} days ago")


def error_of(call: Callable[[], Any]) -> tuple[int, dict] | None:
    """(HTTP status, botocore error dict) of a failing call, None if it succeeded."""
    try:
        call()
    except ClientError as exc:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]
    return None


def client(service: str, endpoint: str) -> Any:
    # Exactly one attempt, so injected faults surface as-is and request counts are exact.
    # (retries={"max_attempts": 1} would still allow one retry: botocore counts retries
    # there, total_max_attempts counts attempts.)
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def http(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def raw_iam(base: str, params: str, *, in_query: bool = False) -> tuple[int, bytes]:
    """An IAM query-protocol request without an SDK: lets us send the action in the query
    string, and read bodies botocore cannot parse (moto's HTML 500 pages)."""
    headers = {"Authorization": "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/iam/aws4_request, "
                                "SignedHeaders=host, Signature=0"}
    if in_query:
        return http(f"{base}/?{params}", headers=headers)
    headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
    return http(f"{base}/", params.encode(), headers)


def stats(ready: dict) -> dict:
    return json.loads(http(ready["proxy"] + "/_stats")[1])


def reset_stats(ready: dict) -> dict:
    return json.loads(http(ready["proxy"] + "/_stats/reset", b"")[1])


def no_stats() -> dict:
    return {"total": 0, "actions": {}, "faults": {"total": 0, "actions": {}}}


class Fixture:
    """moto_fixture.py as the Rust tests run it: stdin and stdout piped, one JSON line."""

    def __init__(self, scenario: Path, *flags: str):
        self.stderr = tempfile.TemporaryFile()
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, str(FIXTURE), str(scenario), *flags],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)

    def ready(self, timeout: float = 30) -> dict | None:
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0]:
            check(False, f"fixture printed no ready line (exit {self.proc.poll()})")
            return None
        self.startup = time.monotonic() - self.started
        return json.loads(line[0])

    def stop(self, how: str = "eof", timeout: float = 5) -> int | None:
        t0 = time.monotonic()
        if how == "eof":
            self.proc.stdin.close()
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            check(False, f"fixture still running {timeout}s after {how}")
            return None
        rest = self.proc.stdout.read()
        check(rest == b"", f"stdout after the ready line must be empty, got {rest[:200]!r}")
        print(f"  stopped by {how} in {time.monotonic() - t0:.2f}s, exit {code}")
        return code

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream and not stream.closed:
                stream.close()


def run(title: str, scenario: Path, flags: list[str], body: Callable[[Fixture, dict], None],
        stop: str = "eof") -> None:
    print(f"== {title}")
    before = len(failures)
    fx = Fixture(scenario, *flags)
    try:
        ready = fx.ready()
        if ready is not None:
            print(f"  ready in {fx.startup:.2f}s")
            check(set(ready) - {"organization"} == READY_FIELDS, f"ready line fields {sorted(ready)}")
            body(fx, ready)
            equal(fx.stop(stop), 0, f"exit code after {stop}")
    except Exception as exc:  # a crash in a check is a failure, not a traceback-and-stop
        check(False, f"{title}: {type(exc).__name__}: {exc}")
        import traceback
        traceback.print_exc()
    finally:
        fx.close()
        if len(failures) > before:
            print("---- fixture stderr ----\n" + fx.stderr_text()[-4000:], file=sys.stderr)


# ---------------------------------------------------------------------------
# smoke.json
# ---------------------------------------------------------------------------

def check_smoke(fx: Fixture, ready: dict) -> None:
    scenario = json.loads(SMOKE.read_text())
    iam = client("iam", ready["proxy"])

    equal(ready["account"], ACCOUNT, "account")
    check(re.fullmatch(r"http://127\.0\.0\.1:\d+", ready["endpoint"]), "endpoint is a loopback URL")
    check(re.fullmatch(r"http://127\.0\.0\.1:\d+", ready["proxy"]), "proxy is a loopback URL")
    want_keys = {"ci-key-old", "ci-key-new", "alice-key", "legacy-key",
                 *(f"svc-bulk-{i}-key-{j}" for i in range(3) for j in range(2))}
    equal(set(ready["keys"]), want_keys, "logical key names")
    check(all(re.fullmatch(r"AKIA[A-Z0-9]{16}", v) for v in ready["keys"].values()), "key ids look like AKIA…")
    equal(stats(ready), no_stats(), "seeding bypasses the proxy")

    # -- users -------------------------------------------------------------
    listed = iam.list_users()
    equal({u["UserName"]: u["Arn"] for u in listed["Users"]}, ready["users"], "ListUsers vs ready users")
    equal(ready["users"]["ci-deployer"], f"arn:aws:iam::{ACCOUNT}:user/machine/ci-deployer", "path in ARN")

    def tags(user: str) -> dict:
        return {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=user)["Tags"]}

    def keys(user: str) -> dict:
        return {m["AccessKeyId"]: m for m in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}

    def last_used(logical: str) -> dict:
        return iam.get_access_key_last_used(AccessKeyId=ready["keys"][logical])["AccessKeyLastUsed"]

    k = ready["keys"]
    # ci-deployer
    equal(tags("ci-deployer"), scenario["users"][0]["tags"], "ci-deployer tags")
    about(iam.get_user(UserName="ci-deployer")["User"]["CreateDate"], 400, "ci-deployer CreateDate")
    equal([g["GroupName"] for g in iam.list_groups_for_user(UserName="ci-deployer")["Groups"]], ["admins"],
          "ci-deployer groups")
    equal({p["PolicyArn"] for p in iam.list_attached_user_policies(UserName="ci-deployer")["AttachedPolicies"]},
          {"arn:aws:iam::aws:policy/AdministratorAccess", f"arn:aws:iam::{ACCOUNT}:policy/deploy-policy"},
          "ci-deployer managed policies (AWS + custom:)")
    equal(iam.get_user_policy(UserName="ci-deployer", PolicyName="inline-admin")["PolicyDocument"],
          scenario["users"][0]["inline_policies"]["inline-admin"], "ci-deployer inline policy")
    ci = keys("ci-deployer")
    equal(list(ci), [k["ci-key-old"], k["ci-key-new"]], "ci-deployer keys in creation order")
    equal(ci[k["ci-key-old"]]["Status"], "Inactive", "ci-key-old status")
    equal(ci[k["ci-key-new"]]["Status"], "Active", "ci-key-new default status")
    about(ci[k["ci-key-old"]]["CreateDate"], 200, "ci-key-old CreateDate")
    about(ci[k["ci-key-new"]]["CreateDate"], 10, "ci-key-new CreateDate")
    old = last_used("ci-key-old")
    about(old.get("LastUsedDate"), 150, "ci-key-old LastUsedDate")
    equal((old["ServiceName"], old["Region"]), ("s3", "us-east-1"), "ci-key-old last used service/region")
    new = last_used("ci-key-new")
    equal((new.get("LastUsedDate"), new["ServiceName"], new["Region"]), (None, "N/A", "N/A"),
          "never-used key (AWS's N/A convention)")
    equal(error_of(lambda: iam.get_login_profile(UserName="ci-deployer"))[1]["Code"], "NoSuchEntity",
          "ci-deployer has no login profile")
    equal(len(iam.list_ssh_public_keys(UserName="ci-deployer")["SSHPublicKeys"]), 1, "ci-deployer ssh keys")
    equal(iam.list_signing_certificates(UserName="ci-deployer")["Certificates"], [], "ci-deployer certificates")

    # alice: console user with MFA
    about(iam.get_login_profile(UserName="alice")["LoginProfile"]["CreateDate"], 700,
          "alice GetLoginProfile CreateDate (= user CreateDate in moto)")
    about(iam.get_user(UserName="alice")["User"].get("PasswordLastUsed"), 2, "alice PasswordLastUsed")
    equal(len(iam.list_mfa_devices(UserName="alice")["MFADevices"]), 1, "alice MFA device")
    equal([g["GroupName"] for g in iam.list_groups_for_user(UserName="alice")["Groups"]], ["readers"], "alice groups")
    a = last_used("alice-key")
    about(a.get("LastUsedDate"), 1, "alice-key LastUsedDate")
    equal((a["ServiceName"], a["Region"]), ("iam", "us-east-1"), "last_used defaults")

    # legacy-batch: login profile true, SSH keys and certificates as lists
    check(iam.get_login_profile(UserName="legacy-batch")["LoginProfile"], "legacy-batch login profile")
    lk = keys("legacy-batch")[k["legacy-key"]]
    about(lk["CreateDate"], 1200, "legacy-key CreateDate")
    equal(last_used("legacy-key").get("LastUsedDate"), None, "legacy-key never used (last_used omitted)")
    ssh = iam.list_ssh_public_keys(UserName="legacy-batch")["SSHPublicKeys"]
    equal([s["Status"] for s in ssh], ["Inactive", "Active"], "legacy-batch ssh key statuses")
    about(ssh[0]["UploadDate"], 500, "legacy-batch ssh key UploadDate")
    certs = iam.list_signing_certificates(UserName="legacy-batch")["Certificates"]
    equal([c["Status"] for c in certs], ["Active", "Inactive"], "legacy-batch certificate statuses")
    about(certs[0]["UploadDate"], 300, "legacy-batch certificate UploadDate")

    equal(keys("no-credentials"), {}, "no-credentials has no keys")

    # bulk users
    equal(ready["users"]["svc-bulk-1"], f"arn:aws:iam::{ACCOUNT}:user/bulk/svc-bulk-1", "bulk path")
    equal(tags("svc-bulk-1"), {"owner": "bulk@example.com"}, "bulk tags")
    bulk = keys("svc-bulk-2")
    equal(list(bulk), [k["svc-bulk-2-key-0"], k["svc-bulk-2-key-1"]], "bulk keys map to real ids")
    check(all(m["Status"] == "Active" for m in bulk.values()), "bulk keys active")

    # -- groups, policies --------------------------------------------------
    equal([p["PolicyArn"] for p in iam.list_attached_group_policies(GroupName="admins")["AttachedPolicies"]],
          ["arn:aws:iam::aws:policy/AdministratorAccess"], "admins policies")
    readers = iam.get_group(GroupName="readers")
    equal(readers["Group"]["Path"], "/teams/", "readers path")
    equal([u["UserName"] for u in readers["Users"]], ["alice"], "readers members")
    equal(iam.list_group_policies(GroupName="readers")["PolicyNames"], ["deny-secrets"], "readers inline policy")
    local = iam.list_policies(Scope="Local")["Policies"]
    equal([p["PolicyName"] for p in local], ["deploy-policy"], "customer managed policies")
    version = iam.get_policy_version(PolicyArn=local[0]["Arn"], VersionId=local[0]["DefaultVersionId"])
    equal(version["PolicyVersion"]["Document"], scenario["policies"][0]["document"], "deploy-policy document")
    check(iam.get_policy(PolicyArn="arn:aws:iam::aws:policy/AmazonS3FullAccess"),
          "aws_managed_policies=all loads unreferenced AWS managed policies too")

    # -- roles ---------------------------------------------------------------
    equal({r["RoleName"]: r["Arn"] for r in iam.list_roles()["Roles"]}, ready["roles"], "ListRoles vs ready roles")
    dep = iam.get_role(RoleName="deployer")["Role"]
    equal(dep["AssumeRolePolicyDocument"], scenario["roles"][0]["trust"], "deployer trust policy")
    about(dep["CreateDate"], 100, "deployer CreateDate")
    equal(dep.get("RoleLastUsed", {}).get("LastUsedDate"), None, "deployer never used")
    equal([p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName="deployer")["AttachedPolicies"]],
          [f"arn:aws:iam::{ACCOUNT}:policy/deploy-policy"], "deployer policies")
    lam = iam.get_role(RoleName="lambda-exec")["Role"]
    equal((lam["Path"], lam.get("Description")), ("/service-role/", "runs the nightly job"), "lambda-exec path/description")
    equal({t["Key"]: t["Value"] for t in lam.get("Tags", [])}, {"owner": "data@example.com"}, "lambda-exec tags")
    about(lam["CreateDate"], 365, "lambda-exec CreateDate")
    about(lam["RoleLastUsed"].get("LastUsedDate"), 3, "lambda-exec RoleLastUsed date")
    equal(lam["RoleLastUsed"].get("Region"), "eu-west-1", "lambda-exec RoleLastUsed region")
    equal(iam.get_role_policy(RoleName="lambda-exec", PolicyName="read-bucket")["PolicyDocument"],
          scenario["roles"][1]["inline_policies"]["read-bucket"], "lambda-exec inline policy")
    equal([p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName="lambda-exec")["AttachedPolicies"]],
          ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"], "lambda-exec policies (AWS, with path)")
    equal(iam.get_role(RoleName="cross-account-audit")["Role"]["AssumeRolePolicyDocument"],
          scenario["roles"][2]["trust"], "cross-account trust with condition")

    # -- credential report and root -------------------------------------------
    equal(iam.get_account_summary()["SummaryMap"]["AccountAccessKeysPresent"], 1, "AccountAccessKeysPresent")
    iam.generate_credential_report()
    rows = list(csv.DictReader(io.StringIO(iam.get_credential_report()["Content"].decode())))
    equal([r["user"] for r in rows], ["<root_account>", *ready["users"]], "credential report rows")
    root = rows[0]
    equal(root["arn"], f"arn:aws:iam::{ACCOUNT}:root", "root row ARN")
    equal(root["access_key_1_active"], "true", "root key active")
    about(root["access_key_1_last_rotated"], 900, "root key last rotated")
    about(root["access_key_1_last_used_date"], 30, "root key last used")
    equal((root["access_key_1_last_used_region"], root["access_key_1_last_used_service"]), ("eu-west-1", "ec2"),
          "root key last used region/service")
    byname = {r["user"]: r for r in rows}
    cd = byname["ci-deployer"]
    about(cd["user_creation_time"], 400, "report ci-deployer user_creation_time")
    equal((cd["password_enabled"], cd["access_key_1_active"], cd["access_key_2_active"]), ("false", "false", "true"),
          "report ci-deployer flags")
    about(cd["access_key_1_last_rotated"], 200, "report ci-key-old last rotated")
    about(cd["access_key_1_last_used_date"], 150, "report ci-key-old last used")
    equal(cd["access_key_2_last_used_date"], "N/A", "report ci-key-new never used")
    al = byname["alice"]
    equal((al["password_enabled"], al["mfa_active"]), ("true", "true"), "report alice password/mfa")
    about(al["password_last_used"], 2, "report alice password_last_used")

    # -- proxy stats: every action counted once, the query-string form too ------
    equal(reset_stats(ready), no_stats(), "POST /_stats/reset returns zeroed stats")
    iam.list_users()
    iam.get_user(UserName="alice")
    iam.get_user(UserName="ci-deployer")
    iam.list_access_keys(UserName="alice")
    status, body = raw_iam(ready["proxy"], "Action=ListUsers&Version=2010-05-08", in_query=True)
    check(status == 200 and b"<ListUsersResponse" in body, f"Action in the query string is forwarded ({status})")
    equal(stats(ready), {"total": 5, "actions": {"ListUsers": 2, "GetUser": 2, "ListAccessKeys": 1},
                         "faults": {"total": 0, "actions": {}}}, "/_stats after known calls")

    # -- moto support facts stated in README.md --------------------------------
    n_users = len(ready["users"])
    page = iam.list_users(MaxItems=2)
    equal((len(page["Users"]), page["IsTruncated"], page.get("Marker")), (n_users, False, None),
          "ListUsers ignores MaxItems (one page, IsTruncated=false)")
    page = iam.list_users(MaxItems=2, Marker="anything")
    equal(len(page["Users"]), n_users, "ListUsers ignores Marker")
    page = iam.list_roles(MaxItems=2)
    equal((len(page["Roles"]), page["IsTruncated"], page.get("Marker")), (2, True, "2"), "ListRoles paginates")
    equal(len(iam.list_roles(MaxItems=2, Marker=page["Marker"])["Roles"]), 1, "ListRoles second page")
    gaad = iam.get_account_authorization_details(Filter=["User"], MaxItems=1)
    equal((len(gaad["UserDetailList"]), gaad["IsTruncated"]), (n_users, False), "GAAD ignores MaxItems")
    status, body = raw_iam(ready["proxy"], "Action=ListServiceSpecificCredentials&Version=2010-05-08&UserName=alice")
    check(status == 500 and b"<ErrorResponse" not in body,
          f"ListServiceSpecificCredentials is unimplemented in moto: HTML 500 (got {status} {body[:80]!r})")


# ---------------------------------------------------------------------------
# Faults (small scenario, AWS managed policies loaded on demand)
# ---------------------------------------------------------------------------

SMALL = {
    "aws_managed_policies": "referenced",
    "users": [{"name": "u", "login_profile": True, "ssh_keys": 1, "keys": [{"name": "k"}],
               "managed_policies": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}],
    "bulk_users": {"count": 2},
}


def check_throttle_and_actions(fx: Fixture, ready: dict) -> None:
    iam = client("iam", ready["proxy"])
    for i in (1, 2):
        err = error_of(iam.list_users)
        check(err and err[0] == 400 and err[1]["Code"] == "Throttling" and err[1]["Message"] == "Rate exceeded",
              f"request {i} throttled: {err}")
    check(error_of(iam.list_users) is None, "third request forwarded")
    err = error_of(lambda: iam.list_ssh_public_keys(UserName="u"))
    check(err and err[0] == 500 and err[1]["Code"] == "InternalFailure" and err[1]["Type"] == "Receiver",
          f"ListSSHPublicKeys=500 -> InternalFailure: {err}")
    err = error_of(lambda: iam.get_login_profile(UserName="u"))
    check(err and err[0] == 403 and err[1]["Code"] == "AccessDenied" and err[1]["Type"] == "Sender",
          f"GetLoginProfile=403:AccessDenied: {err}")
    equal(stats(ready), {"total": 5, "actions": {"ListUsers": 3, "ListSSHPublicKeys": 1, "GetLoginProfile": 1},
                         "faults": {"total": 4, "actions": {"ListUsers": 2, "ListSSHPublicKeys": 1,
                                                            "GetLoginProfile": 1}}}, "/_stats with faults")

    direct = client("iam", ready["endpoint"])
    equal(len(direct.list_ssh_public_keys(UserName="u")["SSHPublicKeys"]), 1, "faults only at the proxy")
    equal(set(ready["keys"]), {"k", "svc-bulk-0-key-0", "svc-bulk-1-key-0"}, "bulk defaults")
    policies = direct.get_account_authorization_details()["Policies"]
    equal([p["Arn"] for p in policies], ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
          "aws_managed_policies=referenced loads only referenced AWS policies")
    equal(error_of(lambda: direct.get_policy(PolicyArn="arn:aws:iam::aws:policy/AmazonS3FullAccess"))[1]["Code"],
          "NoSuchEntity", "unreferenced AWS policy absent")
    equal(stats(ready)["total"], 5, "direct calls are not counted")


SERVED = {
    **SMALL,
    "users": [*SMALL["users"], {"name": "used", "keys": [
        {"name": "used-k", "last_used": {"days_ago": 2, "service": "s3", "region": "eu-west-1"}}]}],
    "credential_report": "aws",
    "service_specific_credentials": [
        {"name": "u-git", "user": "u", "created_days_ago": 3},
        {"name": "u-cassandra", "user": "u", "service": "cassandra.amazonaws.com", "status": "Inactive"},
        {"name": "bulk-git", "user": "svc-bulk-1"},
    ],
}


def check_service_credentials(fx: Fixture, ready: dict) -> None:
    # Served by the proxy in the API reference's shape, parsed here by botocore's own
    # service model; an Action/Param fault refuses AllUsers and still serves per user.
    iam = client("iam", ready["proxy"])
    mine = iam.list_service_specific_credentials(UserName="u")
    got = sorted((c["ServiceSpecificCredentialId"], c["UserName"], c["ServiceName"], c["Status"],
                  c["ServiceUserName"]) for c in mine["ServiceSpecificCredentials"])
    equal(got, sorted([(ready["keys"]["u-git"], "u", "codecommit.amazonaws.com", "Active", "u-at-123456789012"),
                       (ready["keys"]["u-cassandra"], "u", "cassandra.amazonaws.com", "Inactive",
                        "u-at-123456789012")]), "per-user listing, documented fields")
    created = {c["ServiceSpecificCredentialId"]: c["CreateDate"] for c in mine["ServiceSpecificCredentials"]}
    about(created[ready["keys"]["u-git"]].isoformat(), 3, "CreateDate back-dated")
    equal(mine.get("IsTruncated"), False, "one page")
    err = error_of(lambda: iam.list_service_specific_credentials(AllUsers=True))
    check(err and err[0] == 403 and err[1]["Code"] == "AccessDenied",
          f"ListServiceSpecificCredentials/AllUsers=403:AccessDenied refuses AllUsers: {err}")
    status, _ = raw_iam(ready["endpoint"], "Action=ListServiceSpecificCredentials&Version=2010-05-08&AllUsers=true")
    check(status == 500, f"moto itself still does not implement it ({status})")
    equal(stats(ready)["actions"], {"ListServiceSpecificCredentials": 2}, "counted like any action")


def check_service_credentials_all_users(fx: Fixture, ready: dict) -> None:
    iam = client("iam", ready["proxy"])
    first = iam.list_service_specific_credentials(AllUsers=True, MaxItems=2)
    equal((len(first["ServiceSpecificCredentials"]), first["IsTruncated"], first.get("Marker")), (2, True, "2"),
          "AllUsers pages by MaxItems")
    rest = iam.list_service_specific_credentials(AllUsers=True, MaxItems=2, Marker=first["Marker"])
    equal(([c["UserName"] for c in rest["ServiceSpecificCredentials"]], rest["IsTruncated"]),
          (["svc-bulk-1"], False), "AllUsers second page")
    none = iam.list_service_specific_credentials(UserName="svc-bulk-0")
    equal(none["ServiceSpecificCredentials"], [], "a user without any: empty list")

    # credential_report "aws": each key slot's last region and service, N/A if never used.
    iam.generate_credential_report()
    iam.generate_credential_report()
    rows = {r["user"]: r for r in csv.DictReader(io.StringIO(iam.get_credential_report()["Content"].decode()))}
    equal((rows["used"]["access_key_1_last_used_region"], rows["used"]["access_key_1_last_used_service"]),
          ("eu-west-1", "s3"), "report: a used key's region and service")
    about(rows["used"]["access_key_1_last_used_date"], 2, "report: its last use")
    equal((rows["u"]["access_key_1_last_used_region"], rows["u"]["access_key_1_last_used_service"],
           rows["u"]["access_key_2_last_used_service"]), ("N/A", "N/A", "not_supported"),
          "report: a never-used key N/A; an empty slot as moto writes it")


def check_fail_all(fx: Fixture, ready: dict) -> None:
    iam = client("iam", ready["proxy"])
    try:
        iam.list_users()
        check(False, "fail-all: ListUsers succeeded")
    except ClientError as exc:
        meta, err = exc.response["ResponseMetadata"], exc.response["Error"]
        equal((meta["HTTPStatusCode"], err["Code"], err["Type"], err["Message"], meta.get("RequestId")),
              (503, "ServiceUnavailable", "Receiver", "injected", "x"), "fail-all error")
    ident = client("sts", ready["proxy"]).get_caller_identity()
    equal(ident["Account"], ACCOUNT, "STS through the proxy is not faulted")
    equal(stats(ready), {"total": 2, "actions": {"ListUsers": 1, "GetCallerIdentity": 1},
                         "faults": {"total": 1, "actions": {"ListUsers": 1}}}, "fail-all stats")


def check_seeding_error(scenario: dict, expect_in_stderr: str) -> None:
    print(f"== seeding error ({expect_in_stderr})")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(scenario, f)
    fx = Fixture(Path(f.name))
    try:
        out, _ = fx.proc.communicate(timeout=30)
        equal(fx.proc.returncode, 1, "exit code on seeding error")
        equal(out, b"", "no ready line on seeding error")
        err = fx.stderr_text()
        check("Traceback" in err and expect_in_stderr in err, f"stderr names the problem: {err[-600:]!r}")
    finally:
        fx.close()
        os.unlink(f.name)


OTHER = "210987654321"
ACCOUNTS = {
    "aws_managed_policies": "referenced",
    "policies": [{"name": "boundary", "document": {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}}],
    "users": [{"name": "same", "keys": [{"name": "here-key"}]}],
    "roles": [{"name": "same", "permissions_boundary": "custom:boundary"}],
    "accounts": {OTHER: {"users": [{"name": "same", "keys": [{"name": "there-key"}]}],
                         "roles": [{"name": "scanner"}]}},
}


def check_accounts_boundaries_and_gaad_paging(fx: Fixture, ready: dict) -> None:
    iam = client("iam", ready["proxy"])
    pages = list(iam.get_paginator("get_account_authorization_details").paginate(Filter=["User", "Role"]))
    equal([(len(p["UserDetailList"]), len(p["RoleDetailList"])) for p in pages], [(0, 1), (1, 0)],
          "--proxy-gaad-roles-first: roles on page 1, users on page 2")
    role = pages[0]["RoleDetailList"][0] if pages and pages[0]["RoleDetailList"] else {}
    equal(role.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn"),
          f"arn:aws:iam::{ACCOUNT}:policy/boundary", "role permissions boundary in GAAD")
    # The other account, reached the way the connector does: STS into a role there.
    creds = client("sts", ready["endpoint"]).assume_role(
        RoleArn=f"arn:aws:iam::{OTHER}:role/scanner", RoleSessionName="check")["Credentials"]
    other = boto3.client("iam", endpoint_url=ready["endpoint"], region_name="us-east-1",
                         aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"])
    there = other.get_user(UserName="same")["User"]["Arn"]
    equal(there, f"arn:aws:iam::{OTHER}:user/same", "assumed-role credentials act in the other account")
    equal([k["AccessKeyId"] for k in other.list_access_keys(UserName="same")["AccessKeyMetadata"]],
          [ready["keys"]["there-key"]], "the other account's key is its own")
    equal([k["AccessKeyId"] for k in iam.list_access_keys(UserName="same")["AccessKeyMetadata"]],
          [ready["keys"]["here-key"]], "the default account's key is its own")


TRUST = HERE / "scenarios" / "trust.json"


def check_trust_roles(fx: Fixture, ready: dict) -> None:
    """Instance profiles and service-linked roles, as GAAD shows them to the connector."""
    iam = client("iam", ready["proxy"])
    roles = {r["RoleName"]: r for r in
             iam.get_account_authorization_details(Filter=["Role"])["RoleDetailList"]}
    slr = "AWSServiceRoleForElasticBeanstalk"
    equal(ready["roles"].get(slr),
          f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/elasticbeanstalk.amazonaws.com/{slr}",
          "service-linked role named by AWS, on the ready line")
    equal(roles[slr]["Path"], "/aws-service-role/elasticbeanstalk.amazonaws.com/", "service-linked path")
    about(roles[slr]["CreateDate"], 500, "service-linked role CreateDate")
    equal(roles[slr].get("RoleLastUsed"), {}, "a role never used has an empty RoleLastUsed")
    equal([p["Arn"] for p in roles["web"]["InstanceProfileList"]],
          [f"arn:aws:iam::{ACCOUNT}:instance-profile/web"], "GAAD lists the role's instance profile")
    equal(roles["public-open"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"], "*",
          "moto keeps Principal \"*\" as written")


LAST_ACCESSED = HERE / "scenarios" / "last-accessed.json"


def check_last_accessed(fx: Fixture, ready: dict) -> None:
    """moto lacks GenerateServiceLastAccessedDetails / GetServiceLastAccessedDetails:
    the proxy serves them in the API reference's shapes, which botocore parses against
    the IAM service model; IN_PROGRESS first (--proxy-last-accessed-in-progress 1),
    then COMPLETED, paged by MaxItems / Marker."""
    iam = client("iam", ready["proxy"])
    job = iam.generate_service_last_accessed_details(Arn=ready["users"]["app-stale"])["JobId"]
    first = iam.get_service_last_accessed_details(JobId=job)
    equal(first["JobStatus"], "IN_PROGRESS", "first get of a job")
    pages, marker = [], None
    while True:
        kw = {"JobId": job, "MaxItems": 1, **({"Marker": marker} if marker else {})}
        page = iam.get_service_last_accessed_details(**kw)
        equal(page["JobStatus"], "COMPLETED", "later gets")
        equal(page["JobType"], "SERVICE_LEVEL", "job type")
        pages.append(page["ServicesLastAccessed"])
        if not page["IsTruncated"]:
            break
        marker = page["Marker"]
    equal([[s["ServiceNamespace"] for s in p] for p in pages], [["dynamodb"], ["s3"]], "one service per page")
    by_ns = {s["ServiceNamespace"]: s for p in pages for s in p}
    about(by_ns["s3"]["LastAuthenticated"], 200, "s3 last accessed")
    equal(by_ns["s3"]["TotalAuthenticatedEntities"], 1, "s3 entities")
    never = iam.generate_service_last_accessed_details(Arn=ready["users"]["app-never"])["JobId"]
    iam.get_service_last_accessed_details(JobId=never)
    sqs = iam.get_service_last_accessed_details(JobId=never)["ServicesLastAccessed"]
    equal([(s["ServiceNamespace"], "LastAuthenticated" in s, s["TotalAuthenticatedEntities"]) for s in sqs],
          [("sns", True, 1), ("sqs", False, 0)], "never accessed: no LastAuthenticated")
    err = error_of(lambda: iam.get_service_last_accessed_details(JobId="examplef-9999-c245-eba4-71fe298bcda7"))
    check(err and err[0] == 404 and err[1]["Code"] == "NoSuchEntity", f"unknown job: {err}")
    counted = stats(ready)["actions"]
    equal(counted.get("GenerateServiceLastAccessedDetails"), 2, "generates counted")
    equal(counted.get("GetServiceLastAccessedDetails"), 6, "gets counted")


ORGANIZATION = HERE / "scenarios" / "organization.json"


def check_organization(fx: Fixture, ready: dict) -> None:
    """Organizations through the proxy (JSON protocol, counted by X-Amz-Target), member
    accounts with the scenario's ids, OUs, tags and states, and STS refusing the member
    roles marked unassumable (moto evaluates no trust: it assumes any role ARN)."""
    org = ready.get("organization") or {}
    want = json.loads(ORGANIZATION.read_text())["organization"]
    equal(org.get("accounts"), {a["name"]: a["id"] for a in want["accounts"]}, "account ids as in the scenario")
    equal(sorted(org.get("ous", {})), sorted(["Root"] + [o["name"] for o in want["ous"]]), "OUs named")
    orgs = client("organizations", ready["proxy"])
    listed = {a["Id"]: a for a in orgs.list_accounts()["Accounts"]}
    equal(len(listed), 1 + len(want["accounts"]), "ListAccounts: management + members")
    equal(listed.get("555566667777", {}).get("State"), "SUSPENDED", "closed account suspended")
    equal(listed.get("210987654321", {}).get("State"), "ACTIVE", "member active")
    parent = orgs.list_parents(ChildId="210987654321")["Parents"][0]
    equal((parent["Id"], parent["Type"]), (org["ous"]["Prod"], "ORGANIZATIONAL_UNIT"), "account in its OU")
    up = orgs.list_parents(ChildId=org["ous"]["Prod"])["Parents"][0]
    equal(up["Id"], org["ous"]["Workloads"], "nested OU's parent")
    tags = {t["Key"]: t["Value"] for t in orgs.list_tags_for_resource(ResourceId="210987654321")["Tags"]}
    equal(tags, {"env": "prod", "team": "payments"}, "account tags")
    counted = stats(ready)["actions"]
    equal((counted.get("ListAccounts"), counted.get("ListParents"), counted.get("ListTagsForResource")),
          (1, 2, 1), "Organizations calls counted by action")
    sts = client("sts", ready["proxy"])
    role = lambda account: f"arn:aws:iam::{account}:role/{org['role_name']}"  # noqa: E731
    check(error_of(lambda: sts.assume_role(RoleArn=role("210987654321"), RoleSessionName="check")) is None,
          "member role assumed")
    err = error_of(lambda: sts.assume_role(RoleArn=role("444455556666"), RoleSessionName="check"))
    check(err and err[0] == 403 and err[1]["Code"] == "AccessDenied", f"unassumable member refused: {err}")
    check(error_of(lambda: sts.assume_role(RoleArn="arn:aws:iam::210987654321:role/no-such-role",
                                           RoleSessionName="check")) is None,
          "moto fact: AssumeRole succeeds for a role that does not exist")
    http(f"{ready['proxy']}/_assume/refuse", role("210987654321").encode())
    err = error_of(lambda: sts.assume_role(RoleArn=role("210987654321"), RoleSessionName="check"))
    check(err and err[1]["Code"] == "AccessDenied", f"refused at run time: {err}")
    http(f"{ready['proxy']}/_assume/admit", role("210987654321").encode())
    check(error_of(lambda: sts.assume_role(RoleArn=role("210987654321"), RoleSessionName="check")) is None,
          "admitted again")


def main() -> int:
    t0 = time.monotonic()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(SMALL, f)
    small = Path(f.name)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(SERVED, f)
    served = Path(f.name)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(ACCOUNTS, f)
    accounts = Path(f.name)
    try:
        run("accounts, boundaries, GAAD paged", accounts, ["--proxy-gaad-roles-first"],
            check_accounts_boundaries_and_gaad_paging)
        run("smoke.json", SMOKE, [], check_smoke)
        run("organization.json: Organizations, member roles, refused assumption", ORGANIZATION, [],
            check_organization)
        run("trust.json: instance profiles, service-linked roles", TRUST, [], check_trust_roles)
        run("service last-accessed (proxy)", LAST_ACCESSED, ["--proxy-last-accessed-in-progress", "1"],
            check_last_accessed)
        run("throttle + per-action faults", small,
            ["--proxy-throttle-first", "2", "--proxy-fail-action", "ListSSHPublicKeys=500",
             "--proxy-fail-action", "GetLoginProfile=403:AccessDenied"], check_throttle_and_actions)
        run("fail-all 503, stopped by SIGTERM", small, ["--proxy-fail-all", "503"], check_fail_all, stop="sigterm")
        run("service-specific credentials served, AllUsers refused", served,
            ["--proxy-fail-action", "ListServiceSpecificCredentials/AllUsers=403:AccessDenied"],
            check_service_credentials)
        run("service-specific credentials of all users, paged", served, [], check_service_credentials_all_users)
        check_seeding_error({"users": [{"name": "x", "groups": ["missing"]}]}, "NoSuchEntity")
        check_seeding_error({"users": [{"name": "x", "create_days_ago": 3}]}, "unknown field")
    finally:
        os.unlink(small)
        os.unlink(served)
        os.unlink(accounts)
    elapsed = time.monotonic() - t0
    check(elapsed < 60, f"self-check took {elapsed:.1f}s (budget 60s)")
    if failures:
        print(f"\n{len(failures)} check(s) failed:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    print(f"\nall checks passed in {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
