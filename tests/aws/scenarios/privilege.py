#!/usr/bin/env python3
"""Writes privilege.json, the scenario of connectors/aws/tests/privilege.rs:

    python3 tests/aws/scenarios/privilege.py > tests/aws/scenarios/privilege.json

One principal per escalation method of connectors/aws/src/policy.rs (`p-*`, each
admin-equivalent through that method alone) and near misses (`n-*`: the method on one
named object, a step missing, a compute action without iam:PassRole); denies across
policies, permissions boundaries, two policies that escalate only together.
"""
import json
A = "123456789012"
def stmt(actions, resources, effect="Allow"):
    return {"Effect": effect, "Action": actions, "Resource": resources}
def doc(*stmts):
    return {"Version": "2012-10-17", "Statement": list(stmts)}
U = lambda n: f"arn:aws:iam::{A}:user/{n}"
R = lambda n: f"arn:aws:iam::{A}:role/{n}"
G = lambda n: f"arn:aws:iam::{A}:group/{n}"
P = lambda n: f"arn:aws:iam::{A}:policy/{n}"
ALL_ROLES = f"arn:aws:iam::{A}:role/*"
users, roles, groups, policies = [], [], [], []
def user(name, *stmts, **kw):
    u = {"name": name, "inline_policies": {"p": doc(*stmts)}} if stmts else {"name": name}
    u.update(kw); users.append(u)
def role(name, *stmts, **kw):
    r = {"name": name, "inline_policies": {"p": doc(*stmts)}} if stmts else {"name": name}
    r.update(kw); roles.append(r)
pass_all = stmt("iam:PassRole", ALL_ROLES)
pass_one = stmt("iam:PassRole", R("target"))
role("target")  # a role to pass / name
groups.append({"name": "g-put"}); groups.append({"name": "g-attach"}); groups.append({"name": "other-group"})
policies.append({"name": "self-edit", "document": doc(stmt("iam:CreatePolicyVersion", P("self-edit")))})
policies.append({"name": "unrelated", "document": doc(stmt("s3:GetObject", "*"))})

# positives (p-*) and negatives (n-*)
user("p-full-access", stmt("*", "arn:aws:*:*:*:*"))
user("n-full-access", stmt("*", "arn:aws:s3:::*"))
user("p-create-policy-version", stmt("iam:CreatePolicyVersion", f"arn:aws:iam::{A}:policy/*"))
user("p-create-policy-version-held", managed_policies=["custom:self-edit"])
user("n-create-policy-version", stmt("iam:CreatePolicyVersion", P("unrelated")))
user("p-set-default-policy-version", stmt("iam:SetDefaultPolicyVersion", f"arn:aws:iam::{A}:policy/*"))
user("n-set-default-policy-version", stmt("iam:SetDefaultPolicyVersion", P("unrelated")))
user("p-put-user-policy", stmt("iam:PutUserPolicy", f"arn:aws:iam::{A}:user/${{aws:username}}"))
user("n-put-user-policy", stmt("iam:PutUserPolicy", U("target-user")))
user("p-put-group-policy", stmt("iam:PutGroupPolicy", G("g-put")), groups=["g-put"])
user("n-put-group-policy", stmt("iam:PutGroupPolicy", G("other-group")), groups=["g-put"])
role("p-put-role-policy", stmt("iam:PutRolePolicy", R("p-put-role-policy")))
role("n-put-role-policy", stmt("iam:PutRolePolicy", R("target")))
user("p-attach-user-policy", stmt("iam:AttachUserPolicy", f"arn:aws:iam::{A}:user/*"))
user("n-attach-user-policy", stmt("iam:AttachUserPolicy", U("target-user")))
user("p-attach-group-policy", stmt("iam:AttachGroupPolicy", f"arn:aws:iam::{A}:group/*"))
user("n-attach-group-policy", stmt("iam:AttachGroupPolicy", G("other-group")), groups=["g-attach"])
user("p-attach-role-policy", stmt("iam:AttachRolePolicy", f"arn:aws:iam::{A}:role/*"))
user("n-attach-role-policy", stmt("iam:AttachRolePolicy", R("target")))
user("p-add-user-to-group", stmt("iam:AddUserToGroup", f"arn:aws:iam::{A}:group/*"))
user("n-add-user-to-group", stmt("iam:AddUserToGroup", G("other-group")))
for m, n in [("CreateLoginProfile", "create-login-profile"), ("UpdateLoginProfile", "update-login-profile"),
             ("CreateAccessKey", "create-access-key")]:
    user(f"p-{n}", stmt(f"iam:{m}", f"arn:aws:iam::{A}:user/*"))
    user(f"n-{n}", stmt(f"iam:{m}", f"arn:aws:iam::{A}:user/${{aws:username}}"))
user("p-update-assume-role-policy", stmt("iam:UpdateAssumeRolePolicy", f"arn:aws:iam::{A}:role/*"))
user("n-update-assume-role-policy", stmt("iam:UpdateAssumeRolePolicy", R("target")))
for m, n in [("PutUserPermissionsBoundary", "put-user-permissions-boundary"),
             ("DeleteUserPermissionsBoundary", "delete-user-permissions-boundary")]:
    user(f"p-{n}", stmt(f"iam:{m}", f"arn:aws:iam::{A}:user/*"))
    user(f"n-{n}", stmt(f"iam:{m}", U("target-user")))
for m, n in [("PutRolePermissionsBoundary", "put-role-permissions-boundary"),
             ("DeleteRolePermissionsBoundary", "delete-role-permissions-boundary")]:
    user(f"p-{n}", stmt(f"iam:{m}", f"arn:aws:iam::{A}:role/*"))
    user(f"n-{n}", stmt(f"iam:{m}", R("target")))
user("target-user")
# PassRole + compute
compute = {
    "lambda": ["lambda:CreateFunction", "lambda:InvokeFunction"],
    "lambda-esm": ["lambda:CreateFunction", "lambda:CreateEventSourceMapping"],
    "ec2": ["ec2:RunInstances"],
    "glue-dev-endpoint": ["glue:CreateDevEndpoint"],
    "glue-job": ["glue:CreateJob", "glue:StartJobRun"],
    "cloudformation": ["cloudformation:CreateStack"],
    "codebuild": ["codebuild:CreateProject", "codebuild:StartBuild"],
    "sagemaker-notebook": ["sagemaker:CreateNotebookInstance"],
    "sagemaker-training": ["sagemaker:CreateTrainingJob"],
    "sagemaker-processing": ["sagemaker:CreateProcessingJob"],
    "ecs-run-task": ["ecs:RunTask"],
    "ecs-service": ["ecs:RegisterTaskDefinition", "ecs:CreateService"],
    "datapipeline": ["datapipeline:CreatePipeline", "datapipeline:PutPipelineDefinition"],
}
for n, acts in compute.items():
    user(f"p-passrole-{n}", pass_all, stmt(acts, "*"))
    # without PassRole: the compute action alone
    user(f"n-passrole-{n}", stmt(acts, "*"))
    # one missing step, or PassRole on one (non-admin) role only
    if len(acts) > 1:
        user(f"n-partial-{n}", pass_all, stmt(acts[:1], "*"))
    else:
        user(f"n-partial-{n}", pass_one, stmt(acts, "*"))
user("n-passrole-alone", pass_all)
# PassRole on "*" alone: never admin on its own
user("n-passrole-star-alone", stmt("iam:PassRole", "*"))
# denies across policies and boundaries
groups.append({"name": "admins", "managed_policies": ["arn:aws:iam::aws:policy/AdministratorAccess"]})
user("deny-across", stmt("*", [f"arn:aws:iam::*:{k}/*" for k in ("user", "group", "role", "policy")], effect="Deny"), groups=["admins"])
user("deny-elsewhere", stmt("s3:*", "arn:aws:s3:::prod-*", effect="Deny"), groups=["admins"])
policies.append({"name": "boundary-s3", "document": doc(stmt("s3:*", "*"))})
policies.append({"name": "boundary-open", "document": doc(stmt("*", "*"))})
role("bounded-admin", managed_policies=["arn:aws:iam::aws:policy/AdministratorAccess"], permissions_boundary="custom:boundary-s3")
role("unbounded-admin", managed_policies=["arn:aws:iam::aws:policy/AdministratorAccess"])
role("bounded-open", managed_policies=["arn:aws:iam::aws:policy/AdministratorAccess"], permissions_boundary="custom:boundary-open")
# two policies harmless apart, admin together
policies.append({"name": "pass-roles", "document": doc(pass_all)})
policies.append({"name": "run-lambda", "document": doc(stmt(["lambda:CreateFunction", "lambda:InvokeFunction"], "*"))})
user("split-passrole-lambda", managed_policies=["custom:pass-roles", "custom:run-lambda"])
# joining one named group: admin when that group is
user("p-add-user-to-admin-group", stmt("iam:AddUserToGroup", G("admins")))
# acting as one named principal: a trust edge to it, not admin by itself
user("admin-user", groups=["admins"])
user("t-key-of-admin", stmt("iam:CreateAccessKey", U("admin-user")))
user("t-pass-admin-ec2", stmt("iam:PassRole", R("unbounded-admin")), stmt("ec2:RunInstances", "*"))
user("t-pass-admin-only", stmt("iam:PassRole", R("unbounded-admin")))
user("t-trust-of-admin", stmt("iam:UpdateAssumeRolePolicy", R("unbounded-admin")))
scenario = {
    "description": "privilege: one principal per escalation method (p-*) and a near miss for each (n-*); "
                   "denies across policies; permissions boundaries; two policies that escalate only together",
    "aws_managed_policies": "referenced",
    "policies": policies, "groups": groups, "users": users, "roles": roles,
}
print(json.dumps(scenario, indent=1))
