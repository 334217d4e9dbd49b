"""template.yaml: the resources and interface other tooling relies on."""

from __future__ import annotations

import os
import subprocess

import pytest

from provisioner_cli.template import Template
from provisioning.providers import NAMES, PROVIDERS, ProviderInfo
from tests.conftest import ROOT

SAM = ROOT / ".venv-sam" / "bin" / "sam"
CREATE_FUNCTIONS = {p.create.function: (p.create.route, p.create.queue) for p in PROVIDERS}
# Dead-letter queues beside the providers' own: the Palenca sync's, the signup rules', the Cognito
# trigger's fallback queue's and the outcome events' (stream batches not published).
OTHER_DLQS = {"PalencaSyncDLQ", "SignupEventsDLQ", "SignupFallbackDLQ", "OutcomeEventsDLQ", "ImportDLQ"}


def _resource(template: Template, logical_id: str) -> dict:
    assert logical_id in template.resources, f"{logical_id} missing"
    return template.resources[logical_id]


def test_functions_run_python313_on_arm64_with_the_shared_layer(template):
    assert template.globals["Runtime"] == "python3.13"
    assert template.globals["Architectures"] == ["arm64"]
    assert template.globals["Layers"] == [{"Ref": "CoreLayer"}]
    layer = _resource(template, "CoreLayer")
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Metadata"]["BuildMethod"] == "python3.13"
    assert layer["Properties"]["ContentUri"].startswith("layers/")


def test_configuration_variables_are_declared(template):
    env = template.globals["Environment"]["Variables"]
    assert env["USERS_TABLE"] == {"Ref": "UsersTable"}
    assert env["IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTable"}
    palenca = template.function("PalencaCreateUserFunction").environment
    assert palenca["PALENCA_SECRET_ID"] == {"Ref": "PalencaSecretId"}
    assert palenca["PALENCA_BASE_URL"] == {"Ref": "PalencaBaseUrl"}
    for info in PROVIDERS:  # every provider's API by default, as the registry says
        base_url = template.function(info.create.function).environment[info.base_url_variable]
        assert template.parameters[base_url["Ref"]]["Default"] == info.default_base_url, info.name


@pytest.mark.parametrize(("function_id", "route_queue"), CREATE_FUNCTIONS.items())
def test_create_functions_have_api_and_sqs_triggers_with_partial_batch_responses(
    template, function_id, route_queue
):
    route, queue_id = route_queue
    function = template.function(function_id)
    events = {e["Type"]: e["Properties"] for e in function.events.values()}
    assert events["Api"]["Path"] == route
    assert events["Api"]["Method"] == "post"
    sqs = events["SQS"]
    assert sqs["Queue"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "MaximumConcurrency" in sqs["ScalingConfig"]

    queue = _resource(template, queue_id)["Properties"]
    assert int(queue["VisibilityTimeout"]) >= 6 * function.timeout
    redrive = queue["RedrivePolicy"]
    assert 1 <= int(redrive["maxReceiveCount"]) <= 5
    dlq_id = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert _resource(template, dlq_id)["Type"] == "AWS::SQS::Queue"
    assert function.environment["DEAD_LETTER_QUEUE_URL"] == {"Ref": dlq_id}


def test_users_table_serves_both_lookups_and_is_protected(template):
    props = _resource(template, "UsersTable")["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert [k["AttributeName"] for k in props["KeySchema"]] == ["external_id", "provider"]
    index = props["GlobalSecondaryIndexes"][0]
    assert index["IndexName"] == "ByProviderUserId"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["provider_user_id", "provider"]
    idempotency = _resource(template, "IdempotencyTable")["Properties"]
    assert idempotency["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}


def test_api_requires_iam_authorization(template):
    auth = _resource(template, "Api")["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "AWS_IAM"


def test_no_literal_secrets_and_no_wildcard_data_access(template):
    text = template.path.read_text()
    assert "api_key" not in text.replace('{"api_key"', "")  # only in parameter descriptions
    for logical_id in template.functions():
        policies = template.resources[logical_id]["Properties"].get("Policies", [])
        for policy in policies:
            assert policy != "AmazonDynamoDBFullAccess"
            for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
                assert statement.get("Resource") != "*", f"{logical_id} grants Resource *"
        function = template.function(logical_id)
        for name, value in function.environment.items():
            if name.endswith("_SECRET_ID"):
                assert isinstance(value, dict), f"{logical_id}.{name} must reference a parameter"


def test_every_function_folder_holds_only_its_thin_handler(template):
    for logical_id in template.functions():
        function = template.function(logical_id)
        files = sorted(p.name for p in function.code_uri.iterdir() if p.name != "__pycache__")
        # The API docs serve the generated OpenAPI document shipped beside them (data, not code).
        shipped = ["openapi.json"] if logical_id == "ApiDocsFunction" else []
        assert files == ["app.py", *shipped], f"{logical_id}: {files}"
        assert len((function.code_uri / "app.py").read_text().splitlines()) <= 12


def test_events_folder_has_ready_events_for_every_function(template):
    for logical_id in template.functions():
        folder = ROOT / "events" / template.function(logical_id).code_uri.name
        names = {p.name for p in folder.glob("*.json")}
        events = template.function(logical_id).events.values()
        if any(e["Type"] == "Api" for e in events):
            assert "api.json" in names, logical_id
        if any(e["Type"] == "SQS" for e in events):
            assert "sqs.json" in names, logical_id
        if any(e["Type"] == "DynamoDB" for e in events):
            assert "stream.json" in names, logical_id
        if any(e["Type"] == "S3" for e in events):
            assert "put.json" in names, logical_id
        if logical_id in CREATE_FUNCTIONS:
            assert "sqs.json" in names, logical_id
            assert "signup.json" in names, logical_id


def test_the_signup_trigger_answers_cognito_in_time_and_drains_its_fallback_queue(template):
    function = template.function("SignupTriggerFunction")
    assert function.timeout <= 5  # Cognito waits 5 s for a trigger
    names = {p.name for p in (ROOT / "events" / "signup_trigger").glob("*.json")}
    assert {"confirm_sign_up.json", "confirm_forgot_password.json", "sqs.json"} <= names
    (fallback,) = [e["Properties"] for e in function.events.values() if e["Type"] == "SQS"]
    assert fallback["Queue"] == {"Fn::GetAtt": ["SignupFallbackQueue", "Arn"]}
    assert fallback["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = _resource(template, "SignupFallbackQueue")["Properties"]
    assert int(queue["VisibilityTimeout"]) >= 6 * function.timeout
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["SignupFallbackDLQ", "Arn"]}
    env = function.environment
    assert env["SIGNUP_EVENT_BUS_NAME"] == {
        "Fn::If": ["CreateEventBus", {"Ref": "SignupEventBus"}, {"Ref": "EventBusName"}]
    }
    assert env["SIGNUP_FALLBACK_QUEUE_URL"] == {"Ref": "SignupFallbackQueue"}
    assert env["SIGNUP_FALLBACK_DLQ_URL"] == {"Ref": "SignupFallbackDLQ"}
    for variable, parameter in {
        "SIGNUP_EXTERNAL_ID_ATTRIBUTE": "SignupExternalIdAttribute",
        "SIGNUP_PROVIDERS": "SignupProviders",
        "SIGNUP_PROVIDERS_ATTRIBUTE": "SignupProvidersAttribute",
    }.items():
        assert env[variable] == {"Ref": parameter}
    assert template.parameters["SignupUserPoolArn"]["Default"] == ""
    assert template.parameters["SignupProvidersAttribute"]["Default"] == "custom:providers"


def test_env_json_points_every_function_at_the_local_stack(template):
    """`sam local` applies env.json only to the variables a function declares: each entry sets only
    those, AWS_ENDPOINT_URL (declared empty for AWS) included, and every address is the local stack's
    or the sandbox's as a container reaches them."""
    from provisioner_cli.local import local_key_alias, sam_local_env

    assert template.globals["Environment"]["Variables"]["AWS_ENDPOINT_URL"] == ""
    env = sam_local_env(template)
    assert sorted(env) == template.functions()
    for name, variables in env.items():
        assert set(variables) <= set(template.function(name).environment), name
        assert variables["AWS_ENDPOINT_URL"] == "http://host.docker.internal:4566", name
        for key, value in variables.items():
            if "://" in value:
                host = value.split("/")[2]
                assert host in ("host.docker.internal:4566", "host.docker.internal:4577"), (name, key)
            assert "amazonaws.com" not in value, (name, key)
            assert "arn:aws:" not in value, (name, key)
    assert env["ValidicProvisionUserFunction"]["TOKEN_KMS_KEY_ID"] == local_key_alias("TokenEncryptionKey")
    # The signup bus by the name the local stack gives it (provisioner-local-signups).
    assert env["SignupWebhookFunction"]["SIGNUP_EVENT_BUS_NAME"] == "provisioner-local-signups"


def test_an_empty_aws_endpoint_url_leaves_boto3_on_aws(monkeypatch):
    """What the functions get in AWS, where template.yaml declares AWS_ENDPOINT_URL empty."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", "")
    assert (
        boto3.client("sqs", region_name="eu-west-1").meta.endpoint_url
        == "https://sqs.eu-west-1.amazonaws.com"
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    assert boto3.client("sqs", region_name="eu-west-1").meta.endpoint_url == "http://127.0.0.1:4566"


def test_tables_queues_and_log_groups_are_encrypted_with_the_hub_key(template):
    key = {"Ref": "DataEncryptionKey"}
    assert _resource(template, "DataEncryptionKey")["Properties"]["EnableKeyRotation"] is True
    for logical_id in template.of_type("AWS::DynamoDB::Table"):
        sse = template.resources[logical_id]["Properties"]["SSESpecification"]
        assert sse["SSEEnabled"] is True
        assert sse["KMSMasterKeyId"] == key
    for logical_id in template.of_type("AWS::SQS::Queue"):
        assert template.resources[logical_id]["Properties"]["KmsMasterKeyId"] == key, logical_id
    for logical_id in template.of_type("AWS::Logs::LogGroup"):
        assert template.resources[logical_id]["Properties"]["KmsKeyId"] == {
            "Fn::GetAtt": ["DataEncryptionKey", "Arn"]
        }


def test_every_skipped_checkov_check_is_justified(template):
    for logical_id, resource in template.resources.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "")) > 20, f"{logical_id} skips {skip['id']} without a reason"


@pytest.mark.slow
def test_sam_validate_lint_passes():
    result = subprocess.run(
        [str(SAM), "validate", "--lint", "--template", str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_samconfig_configures_the_same_commands_in_every_environment():
    """SAM reads only the chosen environment's sections (nothing falls back to [default]): each one
    must carry every setting."""
    import tomllib

    from provisioner_cli.local import REGION

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    environments = {name: env for name, env in config.items() if name != "version"}
    assert set(environments) == {"default", "dev", "prod"}
    commands = {name: set(env) for name, env in environments.items()}
    assert len({frozenset(c) for c in commands.values()}) == 1, commands
    assert commands["default"] >= {"global", "build", "validate", "deploy", "local_invoke", "local_start_api"}
    stack_names = set()
    for name, env in environments.items():
        settings = {command: section["parameters"] for command, section in env.items()}
        stack_names.add(settings["global"]["stack_name"])
        assert settings["build"]["cached"] is True, name
        assert settings["build"]["parallel"] is True, name
        assert settings["validate"]["lint"] is True, name
        deploy = settings["deploy"]
        assert deploy["capabilities"] == "CAPABILITY_IAM", name
        assert deploy["resolve_s3"] is True, name
        assert isinstance(deploy["confirm_changeset"], bool), name
        assert "region" not in deploy, name  # deploys go to the profile's region
        assert "region" not in settings["global"], name
        for local in ("local_invoke", "local_start_api"):
            assert settings[local]["env_vars"] == "env.json", (name, local)
            assert settings[local]["region"] == REGION, (name, local)  # where the local stack lives
    assert len(stack_names) == 3
    assert environments["prod"]["deploy"]["parameters"]["confirm_changeset"] is True


def test_every_dead_letter_queue_and_function_has_an_alarm_to_the_alarm_topic(template):
    alarms = template.of_type("AWS::CloudWatch::Alarm").values()
    watched = {
        (a["Properties"]["MetricName"], str(a["Properties"]["Dimensions"][0]["Value"])): a for a in alarms
    }
    queues = template.of_type("AWS::SQS::Queue")
    dlqs = [q for q in queues if q.endswith("DLQ")]
    assert set(dlqs) == {p.create.dead_letter_queue for p in PROVIDERS} | OTHER_DLQS
    for dlq in dlqs:
        key = ("ApproximateNumberOfMessagesVisible", str({"Fn::GetAtt": [dlq, "QueueName"]}))
        assert key in watched, f"no alarm on {dlq}"
        assert watched[key]["Properties"]["Threshold"] == 0
    for function in template.functions():
        if "Condition" in template.resources[function]:
            continue
        for metric in ("Errors", "Throttles"):
            assert (metric, str({"Ref": function})) in watched, f"no {metric} alarm on {function}"
    for alarm in alarms:
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    topic = _resource(template, "AlarmTopic")["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "DataEncryptionKey"}
    subscription = _resource(template, "AlarmEmailSubscription")
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}


def test_dashboard_shows_people_errors_and_latency_per_provider(template):
    import json
    import re

    body = _resource(template, "Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
    dashboard = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))
    metrics = [m for w in dashboard["widgets"] for m in w["properties"]["metrics"]]
    for provider in NAMES:
        for name in ("PeopleProvisioned", "ProviderErrors", "ProviderLatency"):
            assert ["Provisioner", name, "provider", provider, "service", "provisioner"] in [
                m[:6] for m in metrics
            ], (name, provider)
    # Low-cardinality dimensions only: provider and service.
    hub = [[part for part in m if isinstance(part, str)] for m in metrics if m[0] == "Provisioner"]
    assert {name for m in hub for name in m[2::2]} == {"provider", "service"}


def test_dashboard_shows_every_function_and_every_dead_letter_queue(template):
    """Each function's errors and throttles, and each dead-letter queue's depth, have a line (but for
    an optional function, which the dashboard cannot name when it is not deployed)."""
    body = _resource(template, "Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
    for function in template.functions():
        if "Condition" in template.resources[function]:
            continue
        for metric in ("Errors", "Throttles"):
            assert f'"{metric}", "FunctionName", "${{{function}}}"' in body, (function, metric)
    for queue in template.of_type("AWS::SQS::Queue"):
        if not queue.endswith("DLQ"):
            continue
        assert f'"QueueName", "${{{queue}.QueueName}}"' in body, queue


def test_signup_rules_route_user_signed_up_to_each_provider_queue(template):
    for info in PROVIDERS:
        rule_id = _signup_rule(template, info)
        rule = template.resources[rule_id]["Properties"]
        queue = info.create.queue
        assert rule["EventPattern"]["detail-type"] == ["UserSignedUp"]
        alternatives = rule["EventPattern"]["$or"]
        assert {"detail": {"providers": [{"exists": False}]}} in alternatives
        assert {"detail": {"providers": [None, info.name]}} in alternatives
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [queue, "Arn"]}
        assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["SignupEventsDLQ", "Arn"]}
        policy = _resource(template, f"{queue}Policy")["Properties"]
        (statement,) = policy["PolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]}


def _signup_rule(template: Template, info: ProviderInfo) -> str:
    """Logical id of the one EventBridge rule that routes signups to the provider's queue."""
    queue_arn = {"Fn::GetAtt": [info.create.queue, "Arn"]}
    rules = [
        logical_id
        for logical_id, rule in template.of_type("AWS::Events::Rule").items()
        if any(t.get("Arn") == queue_arn for t in rule["Properties"].get("Targets", []))
    ]
    assert len(rules) == 1, f"{info.name}: signup rules {rules} target {info.create.queue}"
    return rules[0]


def _alarm_on(template: Template, metric: str, dimension: object) -> str | None:
    for logical_id, alarm in template.of_type("AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        if props["MetricName"] == metric and [d["Value"] for d in props["Dimensions"]] == [dimension]:
            return logical_id
    return None


@pytest.mark.parametrize("info", PROVIDERS, ids=NAMES)
def test_every_registered_provider_is_fully_declared_in_the_template(template, info):
    """What a provider's registration promises exists: its function (code and events folders), route,
    queue and DLQ, alarms, dashboard widgets, signup rule, secret and base URL (and budget) settings."""
    create = info.create
    function = template.function(create.function)
    assert function.code_uri == ROOT / "functions" / create.folder
    assert (ROOT / "functions" / create.folder / "app.py").is_file()
    assert (ROOT / "events" / create.folder).is_dir()
    assert {"api.json", "sqs.json", "signup.json"} <= {
        p.name for p in (ROOT / "events" / create.folder).iterdir()
    }

    events = {e["Type"]: e["Properties"] for e in function.events.values()}
    assert (events["Api"]["Path"], events["Api"]["Method"]) == (create.route, "post")
    assert template.queue_of(create.function) == create.queue
    redrive = _resource(template, create.queue)["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [create.dead_letter_queue, "Arn"]}
    assert _resource(template, create.dead_letter_queue)["Type"] == "AWS::SQS::Queue"
    assert function.environment["QUEUE_URL"] == {"Ref": create.queue}
    assert function.environment["DEAD_LETTER_QUEUE_URL"] == {"Ref": create.dead_letter_queue}

    dlq_name = {"Fn::GetAtt": [create.dead_letter_queue, "QueueName"]}
    assert _alarm_on(template, "ApproximateNumberOfMessagesVisible", dlq_name), "no alarm on its DLQ"
    for metric in ("Errors", "Throttles"):
        assert _alarm_on(template, metric, {"Ref": create.function}), f"no {metric} alarm"

    body = _resource(template, "Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
    for name in ("PeopleProvisioned", "ProviderErrors", "ProviderLatency"):
        assert f'"{name}", "provider", "{info.name}"' in body, name
    assert f'"QueueName", "${{{create.dead_letter_queue}.QueueName}}"' in body
    for metric in ("Errors", "Throttles"):
        assert f'"{metric}", "FunctionName", "${{{create.function}}}"' in body, metric

    rule = _signup_rule(template, info)
    signup_dlq = _resource(template, "SignupEventsDLQPolicy")["Properties"]["PolicyDocument"]
    sources = signup_dlq["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert {"Fn::GetAtt": [rule, "Arn"]} in sources

    for variable in (info.secret_id_variable, info.base_url_variable):
        value = function.environment.get(variable)
        assert isinstance(value, dict), f"{variable} must come from a parameter"
        assert value["Ref"] in template.parameters, variable
    if info.budget is not None:
        budget = function.environment.get(info.budget.setting)
        assert isinstance(budget, dict), f"{info.budget.setting} must come from a parameter"
        assert int(template.parameters[budget["Ref"]]["Default"]) == info.budget.requests


def test_the_palenca_sync_schedule_retries_and_dead_letters_to_an_encrypted_queue(template, translated):
    import json

    from provisioning.listing import SyncRequest, default_window

    function = _resource(template, "PalencaListUsersFunction")
    sync = function["Properties"]["Events"]["Sync"]
    assert sync["Type"] == "Schedule"
    props = sync["Properties"]
    assert props["Schedule"] == {"Ref": "PalencaSyncSchedule"}
    dlq_arn = {"Fn::GetAtt": ["PalencaSyncDLQ", "Arn"]}
    assert props["DeadLetterConfig"] == {"Arn": dlq_arn}
    assert 0 < props["RetryPolicy"]["MaximumRetryAttempts"] <= 185
    assert 60 <= props["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 86400
    # The schedule's constant Input is a window the function accepts: the default one.
    assert SyncRequest.model_validate(json.loads(props["Input"])).sync.window() == default_window()

    # A sync that fails (an async invocation) is retried, then recorded in the same queue.
    invoke_config = function["Properties"]["EventInvokeConfig"]
    assert 0 < invoke_config["MaximumRetryAttempts"] <= 2
    assert invoke_config["DestinationConfig"]["OnFailure"] == {"Type": "SQS", "Destination": dlq_arn}
    skips = {s["id"]: s["comment"] for s in function["Metadata"]["checkov"]["skip"]}
    assert "no async" not in skips.get("CKV_AWS_116", "")

    dlq = _resource(template, "PalencaSyncDLQ")["Properties"]
    assert dlq["KmsMasterKeyId"] == {"Ref": "DataEncryptionKey"}
    assert dlq["MessageRetentionPeriod"] == 1209600
    policy = _resource(template, "PalencaSyncDLQPolicy")["Properties"]
    assert policy["Queues"] == [{"Ref": "PalencaSyncDLQ"}]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == dlq_arn
    source = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert source == {"Fn::GetAtt": ["PalencaListUsersFunctionSync", "Arn"]}
    dashboard = _resource(template, "Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
    assert "${PalencaSyncDLQ.QueueName}" in dashboard

    # As SAM deploys it: the rule that policy names, its target, and the role's right to the queue.
    resources = translated["Resources"]
    rule = resources[source["Fn::GetAtt"][0]]
    assert rule["Type"] == "AWS::Events::Rule"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": "PalencaListUsersFunctionAliaslive"}, "the rule invokes the alias"
    assert target["Input"] == props["Input"]
    assert target["RetryPolicy"] == props["RetryPolicy"]
    assert target["DeadLetterConfig"] == {"Arn": dlq_arn}
    config = resources["PalencaListUsersFunctionEventInvokeConfig"]["Properties"]
    assert config["Qualifier"] == "live", "the retries of the alias's async invocations"
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == dlq_arn
    role = resources["PalencaListUsersFunctionRole"]["Properties"]["Policies"]
    grants = [st for p in role for st in p["PolicyDocument"]["Statement"]]
    assert {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": dlq_arn} in grants


@pytest.mark.parametrize("source_filter", ["", "myapp"])
def test_signup_rules_take_the_hubs_own_signups_beside_the_configured_source(template, source_filter):
    """With SignupEventSource set, the rules still take the UserSignedUp events the hub publishes
    itself (Cognito trigger, webhooks: source provisioner.signups); never the hub's outcome events."""
    from moto.events.models import EventPattern

    from provisioner_cli.template import Resolver

    parameters = {**template.parameter_defaults(), "SignupEventSource": source_filter}
    resolve = Resolver(parameters, {}, {}, template.conditions(parameters))

    def routed(source: str, detail_type: str = "UserSignedUp") -> bool:
        event = {"source": source, "detail-type": detail_type, "detail": {"external_id": "p-1"}}
        return EventPattern(None, resolve(rule["Properties"]["EventPattern"])).matches_event(event)

    for info in PROVIDERS:
        rule = template.resources[_signup_rule(template, info)]
        assert routed("provisioner.signups")
        assert routed("myapp")
        assert routed("another.app") is (source_filter == "")
        assert not routed("provisioner", "PersonProvisioned")


def test_the_import_bucket_is_private_encrypted_tls_only_and_expires_its_files(template):
    bucket = _resource(template, "ImportBucket")["Properties"]
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": ["DataEncryptionKey", "Arn"]},
    }
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (expire,) = bucket["LifecycleConfiguration"]["Rules"]
    assert expire["ExpirationInDays"] == {"Ref": "ImportRetentionDays"}
    assert expire["NoncurrentVersionExpiration"]["NoncurrentDays"] >= 1
    policy = _resource(template, "ImportBucketPolicy")["Properties"]
    (tls,) = policy["PolicyDocument"]["Statement"]
    assert (tls["Effect"], tls["Action"]) == ("Deny", "s3:*")
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_import_function_runs_once_per_file_and_keeps_every_failure(template):
    function = template.function("ImportFunction")
    assert function.timeout == 900  # Lambda's longest: the import stops itself before it
    config = template.resources["ImportFunction"]["Properties"]["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 0  # a retry would send again what was sent
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["ImportDLQ", "Arn"]},
    }
    env = function.environment
    for info in PROVIDERS:  # every create queue: a file may target any provider
        assert env[f"{info.env_prefix}_IMPORT_QUEUE_URL"] == {"Ref": info.create.queue}
