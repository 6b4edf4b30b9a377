"""A behaviour model of AWS where the emulator (moto) is silent, for the test harness only.

moto answers everything at once and never starts a task. This model sits in the fault proxy
(fault_proxy.py, config key "model") and makes the emulator's answers look like AWS's where the stack's
behaviour depends on it. Nothing in the provider knows about it: the provider sees AWS-shaped answers.

Time runs `scale` times faster than AWS's: with scale 60, a minute of AWS time passes in a second. The
figures, in AWS seconds, and where they come from:

- RDS_CREATE = 360: a db.t3.micro goes `creating` -> `backing-up` -> `available` in 5 to 10 minutes
  (RDS DB instance status docs; hashicorp/terraform#2886, #498). No endpoint until `backing-up`.
- RDS_BACKUP = 90: the initial automated backup, the last part of the creation (hashicorp/terraform#498).
- MOUNT_TARGET = 90: an EFS mount target is `creating` for a minute or more
  (hashicorp/terraform-provider-aws#15278; AWS advises 90 s before mounting).
- NAMESPACE = 60: a Cloud Map private DNS namespace's operation stays SUBMITTED/PENDING 30 to 90 s
  (Cloud Map Operation API; hashicorp/terraform-provider-aws PR #2569).
- TASK_START = 45: an ECS task goes PENDING -> RUNNING in seconds to a minute, mostly the image pull
  (ECS task lifecycle docs; aws/amazon-ecs-cli PR #628).
- DEPLOYMENT = 120: after its tasks run, a deployment is COMPLETED once they pass their health checks.
- PULL_RETRY = 30: a task whose image cannot be pulled stops with CannotPullContainerError, and ECS starts
  another after a back-off (observed ~2.5 min apart at first; shortened here).
- The deployment circuit breaker trips after max(3, min(200, ceil(desired / 2))) failed tasks and marks
  the deployment FAILED with "ECS deployment circuit breaker: tasks failed to start."; with no earlier
  COMPLETED deployment nothing runs (ECS API ServiceDeploymentCircuitBreaker; deployment-circuit-breaker
  guide). A FAILED deployment is never retried; a new one (UpdateService) starts over.
- IAM_PROPAGATION = 30: an instance profile is not usable by Auto Scaling for seconds after it is created:
  CreateAutoScalingGroup with a launch template naming it fails with "ValidationError: You must use a valid
  fully-formed launch template. Value (<arn>) for parameter iamInstanceProfile.arn is invalid. Invalid IAM
  Instance Profile ARN" (hashicorp/terraform-provider-aws#4769, #24910; eksctl-io/eksctl#8039: profile
  created 08:13:06, refused 08:13:09, accepted 08:13:40). The first CreateAutoScalingGroup after a new
  profile is always refused, so the retry is exercised whatever the scale.
- The stopped reason of a task whose ECR tag does not exist: "CannotPullContainerError: pull image manifest
  has been retried 1 time(s): failed to resolve ref <image>: <image>: not found", with the container's
  reason the same and no exit code (stopCode TaskFailedToStart).

- A task reads its secrets as it starts, as its execution role: a secret that does not exist, is scheduled
  for deletion, or whose resource policy explicitly denies secretsmanager:GetSecretValue to that role stops
  the task with "ResourceInitializationError: unable to pull secrets or registry auth: execution resource
  retrieval failed: unable to retrieve secret from asm: ..." and the Secrets Manager error (ECS "stopped
  tasks" troubleshooting guide, ResourceInitializationError). The policy conditions understood are
  aws:PrincipalArn and aws:PrincipalAccount with the Arn*/String* operators; a Deny with any other condition
  is not applied. The execution role's own IAM policy is not evaluated.

Deletes take time too (the emulator deletes at once; the model shows what it deleted as still going):
- RDS_DELETE = 300: a deleted instance is `deleting` (its final snapshot, then the instance) for minutes
  before DescribeDBInstances stops finding it (hashicorp/terraform#32358: still destroying after 4 min;
  hashicorp/terraform-provider-aws#38765: after 5). Its identifier cannot be used again meanwhile
  (DBInstanceAlreadyExists).
- SERVICE_STOP = 30: a deleted ECS service is DRAINING until its tasks have stopped (the stop timeout, 30 s
  by default, between SIGTERM and SIGKILL), then INACTIVE (hashicorp/terraform PR #9521); the cluster
  cannot be deleted meanwhile (ClusterContainsServicesException). Behind a load balancer, its tasks first
  keep their in-flight requests for the target group's deregistration delay (DEREGISTRATION_DELAY = 300 by
  default, or what ModifyTargetGroupAttributes set). A deployment's replaced tasks draining the same way is
  not modelled.
- MOUNT_TARGET_DELETE = 60: a deleted mount target is `deleting` for about a minute, and the file system
  cannot be deleted until it is gone (FileSystemInUse; awslabs/kubeflow-manifests PR #217,
  kanisterio/kanister PR #1140, hashicorp/terraform-provider-aws#607).
- A namespace's deletion is an operation like its creation, PENDING for NAMESPACE.
- ASG_SCALE_IN = 120: when an Auto Scaling group is set to zero its instances stay in it, `Terminating`,
  while EC2 shuts them down, and DeleteAutoScalingGroup is refused meanwhile with "ResourceInUse: You
  cannot delete an AutoScalingGroup while there are instances or pending Spot instance request(s) still in
  the group." (ansible/ansible PR #8503; hashicorp/terraform#15988: up to 10 minutes for a group to go).

An image pulls when it is not in ECR (public images are assumed pullable) or when the emulator's ECR holds
its tag. Secrets are judged once per deployment. Only what the stack reads is modelled: DescribeServices, ListTasks and DescribeTasks of failed
tasks, DescribeDBInstances, DescribeMountTargets / CreateMountTarget, GetOperation, CreateAutoScalingGroup
after CreateInstanceProfile, and the deletes above. Container instances joining the cluster are not
modelled (the stack does not wait for them).
"""

import fnmatch
import json
import math
import re
import threading
import time
import urllib.parse
import uuid

RDS_CREATE = 360.0
RDS_BACKUP = 90.0
MOUNT_TARGET = 90.0
NAMESPACE = 60.0
IAM_PROPAGATION = 30.0
TASK_START = 45.0
DEPLOYMENT = 120.0
PULL_RETRY = 30.0
RDS_DELETE = 300.0
SERVICE_STOP = 30.0
MOUNT_TARGET_DELETE = 60.0
DEREGISTRATION_DELAY = 300.0
ASG_SCALE_IN = 120.0

ECS = "AmazonEC2ContainerServiceV20141113"
ECR = "AmazonEC2ContainerRegistry_V20150921"
SECRETS = "secretsmanager"
CIRCUIT_BREAKER = "ECS deployment circuit breaker: tasks failed to start."


def breaker_threshold(desired):
    return max(3, min(200, math.ceil(desired / 2)))


def pull_error(image):
    return (
        "CannotPullContainerError: pull image manifest has been retried 1 time(s): "
        f"failed to resolve ref {image}: {image}: not found"
    )


def listed(value):
    return value if isinstance(value, list) else [value]


def condition_holds(condition, role_arn):
    """Whether a policy statement's Condition holds for a request made as `role_arn` (see the docstring)."""
    facts = {"aws:principalarn": role_arn, "aws:principalaccount": role_arn.split(":")[4]}
    for operator, tests in (condition or {}).items():
        for key, values in tests.items():
            actual = facts.get(key.lower())
            if actual is None:
                return False
            like = operator.endswith("Like")
            matched = any(fnmatch.fnmatchcase(actual, v) if like else actual == v for v in listed(values))
            if operator in ("ArnEquals", "ArnLike", "StringEquals", "StringLike"):
                if not matched:
                    return False
            elif operator in ("ArnNotEquals", "ArnNotLike", "StringNotEquals", "StringNotLike"):
                if matched:
                    return False
            else:
                return False
    return True


def denies_read(policy_text, role_arn):
    """Whether a secret's resource policy explicitly denies GetSecretValue to `role_arn`."""
    try:
        policy = json.loads(policy_text or "{}")
    except ValueError:
        return False
    for statement in listed(policy.get("Statement", [])):
        actions = listed(statement.get("Action", []))
        reads = any(a in ("*", "secretsmanager:*", "secretsmanager:GetSecretValue") for a in actions)
        if statement.get("Effect") == "Deny" and reads and condition_holds(statement.get("Condition"), role_arn):
            return True
    return False


def secret_error(arn, problem):
    return (
        "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval "
        f"failed: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch "
        f"secret {arn} from secrets manager: {problem}"
    )


class Model:
    """The model's memory of what was created when, shared by every handler thread."""

    def __init__(self, scale, call_upstream, error_response):
        self.scale = float(scale)
        self.call_upstream = call_upstream  # (target, body dict, template headers) -> (status, dict)
        self.error_response = error_response  # (protocol, status, code, message) -> (status, headers, body)
        self.profiles = {}  # instance profile ARN -> [created at, refused yet]
        self.lock = threading.Lock()
        self.databases = {}  # identifier -> created at
        self.mount_targets = {}  # id -> created at
        self.operations = {}  # operation id -> started at
        self.deployments = {}  # (cluster, service) -> {"id", "started", "task_definition", "desired"}
        self.definitions = {}  # task definition ARN -> {"images": [(container, image)], "role", "secrets"}
        self.deleted_databases = {}  # identifier -> (deleted at, its <DBInstance> block as last answered)
        self.draining = {}  # (cluster, service) -> (deleted at, AWS seconds until its tasks have stopped)
        self.deregistration_delays = {}  # target group ARN -> seconds, as last set
        self.seen_instances = {}  # Auto Scaling group -> its <Instances> members as last answered
        self.scaled_in = {}  # Auto Scaling group -> (set to zero at, its instances then, as Terminating)
        self.seen_mount_targets = {}  # id -> its description as last listed
        self.deleted_mount_targets = {}  # id -> (deleted at, its description)
        self.serial = 0

    def aws_seconds(self, since):
        return (time.monotonic() - since) * self.scale

    # ------------------------------------------------------------------------------------ hooks

    def intercept(self, protocol, action, body, headers, method="POST", path="/"):
        """An answer the model gives itself, or None to forward the request."""
        if protocol == "query" and action == "CreateAutoScalingGroup":
            return self.profile_not_propagated(protocol)
        if protocol == "query" and action in ("DescribeDBInstances", "CreateDBInstance"):
            return self.database_being_deleted(protocol, action, body)
        if action in ("DeleteDBSubnetGroup", "DeleteDBParameterGroup", "DeleteSecurityGroup"):
            return self.still_used_by_deleting_database(protocol, action, body)
        if protocol == "query" and action == "DeleteAutoScalingGroup":
            return self.group_still_terminating(protocol, body)
        if protocol == "efs" and method == "DELETE":
            return self.file_system_in_use(protocol, path)
        if protocol == "json" and headers.get("X-Amz-Target") == f"{ECS}.DeleteCluster":
            return self.cluster_with_draining_services(protocol, body)
        if protocol == "json" and action in ("ListTasks", "DescribeTasks"):
            request = json.loads(body or b"{}")
            tasks = self.failed_tasks(request, headers) if action == "ListTasks" else None
            if action == "ListTasks" and tasks is not None:
                return json_answer({"taskArns": [t["taskArn"] for t in tasks]})
            if action == "DescribeTasks":
                known = self.describe_failed(request.get("tasks", []), headers)
                if known is not None:
                    return json_answer({"tasks": known, "failures": []})
        return None

    def rewrite(self, protocol, action, body, headers, path, status, payload, method="POST"):
        """The emulator's answer as AWS would give it (or unchanged)."""
        if status >= 300:
            return payload
        target = headers.get("X-Amz-Target", "")
        try:
            if target == f"{ECS}.DeleteService":
                return self.note_draining(json.loads(body or b"{}"), json.loads(payload or b"{}"))
            if protocol == "query" and action == "DeleteDBInstance":
                return self.note_database_deleted(payload)
            if protocol == "query" and action == "ModifyTargetGroupAttributes":
                self.note_deregistration_delay(body)
                return payload
            if protocol == "query" and action == "UpdateAutoScalingGroup":
                self.note_scale_in(body)
                return payload
            if protocol == "query" and action == "DescribeAutoScalingGroups":
                return self.instances_terminating(payload)
            if protocol == "efs" and method == "DELETE":
                self.note_mount_target_deleted(path)
                return payload
            if protocol == "json" and action in ("CreateService", "UpdateService"):
                self.note_deployment(json.loads(body or b"{}"), json.loads(payload or b"{}"), action)
            elif protocol == "json" and action == "DescribeServices":
                return self.describe_services(json.loads(payload), headers)
            elif protocol == "json" and action in ("CreatePrivateDnsNamespace", "DeleteNamespace"):
                # Creating and deleting a namespace are both operations, PENDING for NAMESPACE.
                operation = json.loads(payload).get("OperationId")
                if operation:
                    with self.lock:
                        self.operations[operation] = time.monotonic()
            elif protocol == "json" and action == "GetOperation":
                return self.get_operation(json.loads(payload))
            elif protocol == "query" and action == "CreateDBInstance":
                form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
                identifier = form.get("DBInstanceIdentifier", [None])[0]
                if identifier:
                    with self.lock:
                        self.databases.setdefault(identifier, time.monotonic())
                return self.database_status(payload)
            elif protocol == "query" and action == "CreateInstanceProfile":
                arn = re.search(rb"<Arn>([^<]+)</Arn>", payload)
                if arn:
                    with self.lock:
                        self.profiles[arn.group(1).decode()] = [time.monotonic(), False]
            elif protocol == "query" and action == "DescribeDBInstances":
                return self.database_status(payload)
            elif protocol == "efs" and path.startswith("/2015-02-01/mount-targets"):
                return self.mount_target_status(payload, path)
        except (ValueError, KeyError, TypeError):
            return payload
        return payload

    # ------------------------------------------------------------------------------------ IAM

    def profile_not_propagated(self, protocol):
        """The refusal of a group whose launch template's instance profile IAM has not propagated yet."""
        with self.lock:
            young = [
                (arn, seen)
                for arn, seen in self.profiles.items()
                if not seen[1] or self.aws_seconds(seen[0]) < IAM_PROPAGATION
            ]
            for _, seen in young:
                seen[1] = True
        if not young:
            return None
        arn = young[0][0]
        return self.error_response(
            protocol,
            400,
            "ValidationError",
            f"You must use a valid fully-formed launch template. Value ({arn}) for parameter "
            "iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN",
        )

    # ------------------------------------------------------------------------------------ Auto Scaling

    def note_scale_in(self, body):
        """Remembers a group set to zero: its instances terminate over ASG_SCALE_IN, not at once."""
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        group = form.get("AutoScalingGroupName", [None])[0]
        if form.get("DesiredCapacity", [None])[0] != "0" and form.get("MaxSize", [None])[0] != "0":
            return
        with self.lock:
            members = self.seen_instances.get(group)
            current = self.scaled_in.get(group)
            # Set to zero again while its instances terminate changes nothing; a group made again drains again.
            if group and members and (current is None or self.aws_seconds(current[0]) >= ASG_SCALE_IN):
                terminating = re.sub(
                    r"<LifecycleState>[^<]*</LifecycleState>", "<LifecycleState>Terminating</LifecycleState>", members
                )
                self.scaled_in[group] = (time.monotonic(), terminating)
                # Those instances are going: set to zero again later, the group has no others to terminate.
                self.seen_instances.pop(group, None)

    def terminating_instances(self, group):
        with self.lock:
            scaled = self.scaled_in.get(group)
        if scaled is None or self.aws_seconds(scaled[0]) >= ASG_SCALE_IN:
            return None
        return scaled[1]

    def instances_terminating(self, payload):
        """Each group's instances as last seen (remembered), and a group set to zero with its instances still
        terminating."""
        text = payload.decode("utf-8")

        def one(match):
            group, instances = match.group(1), match.group(3) or ""
            if instances:
                with self.lock:
                    self.seen_instances[group] = instances
                return match.group(0)
            terminating = self.terminating_instances(group)
            if terminating is None:
                return match.group(0)
            return f"{match.group(0)[: match.start(2) - match.start(0)]}<Instances>{terminating}</Instances>"

        pattern = r"<AutoScalingGroupName>([^<]+)</AutoScalingGroupName>.*?(<Instances/>|<Instances>(.*?)</Instances>)"
        return re.sub(pattern, one, text, flags=re.S).encode("utf-8")

    def group_still_terminating(self, protocol, body):
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if self.terminating_instances(form.get("AutoScalingGroupName", [None])[0]) is None:
            return None
        return self.error_response(
            protocol,
            400,
            "ResourceInUse",
            "You cannot delete an AutoScalingGroup while there are instances or pending Spot instance request(s) "
            "still in the group.",
        )

    # ------------------------------------------------------------------------------------ RDS

    def database_status(self, payload):
        text = payload.decode("utf-8")

        def one(match):
            block = match.group(0)
            identifier = re.search(r"<DBInstanceIdentifier>([^<]+)</DBInstanceIdentifier>", block)
            with self.lock:
                created = self.databases.get(identifier.group(1)) if identifier else None
            if created is None or "<DBInstanceStatus>available</DBInstanceStatus>" not in block:
                return block
            age = self.aws_seconds(created)
            if age >= RDS_CREATE:
                return block
            status = "backing-up" if age >= RDS_CREATE - RDS_BACKUP else "creating"
            block = block.replace(
                "<DBInstanceStatus>available</DBInstanceStatus>", f"<DBInstanceStatus>{status}</DBInstanceStatus>"
            )
            if status == "creating":
                block = re.sub(r"<Endpoint>.*?</Endpoint>", "", block, flags=re.S)
            return block

        return re.sub(r"<DBInstance>.*?</DBInstance>", one, text, flags=re.S).encode("utf-8")

    def note_database_deleted(self, payload):
        """Remembers a deleted instance, which AWS shows as `deleting` for RDS_DELETE; answers as AWS does."""
        text = payload.decode("utf-8")
        block = re.search(r"<DBInstance>.*?</DBInstance>", text, flags=re.S)
        identifier = re.search(r"<DBInstanceIdentifier>([^<]+)</DBInstanceIdentifier>", text)
        if not block or not identifier:
            return payload
        deleting = re.sub(
            r"<DBInstanceStatus>[^<]*</DBInstanceStatus>", "<DBInstanceStatus>deleting</DBInstanceStatus>", block.group(0)
        )
        with self.lock:
            self.deleted_databases[identifier.group(1)] = (time.monotonic(), deleting)
            self.databases.pop(identifier.group(1), None)
        return text.replace(block.group(0), deleting).encode("utf-8")

    def database_being_deleted(self, protocol, action, body):
        """DescribeDBInstances of an instance still being deleted (AWS still finds it), or CreateDBInstance of
        its identifier (AWS refuses it); None otherwise."""
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        identifier = form.get("DBInstanceIdentifier", [None])[0]
        with self.lock:
            deleted = self.deleted_databases.get(identifier)
        if deleted is None or self.aws_seconds(deleted[0]) >= RDS_DELETE:
            return None
        if action == "CreateDBInstance":
            return self.error_response(protocol, 400, "DBInstanceAlreadyExists", "DB instance already exists")
        answer = (
            '<DescribeDBInstancesResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">'
            f"<DescribeDBInstancesResult><DBInstances>{deleted[1]}</DBInstances></DescribeDBInstancesResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</DescribeDBInstancesResponse>"
        )
        return 200, {"Content-Type": "text/xml"}, answer.encode("utf-8")

    def still_used_by_deleting_database(self, protocol, action, body):
        """AWS's refusal to delete a subnet group, parameter group or security group that an instance still being
        deleted uses (its network interfaces go with it); None when none does."""
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        field, element = {
            "DeleteDBSubnetGroup": ("DBSubnetGroupName", "DBSubnetGroupName"),
            "DeleteDBParameterGroup": ("DBParameterGroupName", "DBParameterGroupName"),
            "DeleteSecurityGroup": ("GroupId", "VpcSecurityGroupId"),
        }[action]
        name = form.get(field, [None])[0]
        with self.lock:
            deleting = [
                block
                for deleted, block in self.deleted_databases.values()
                if self.aws_seconds(deleted) < RDS_DELETE
            ]
        user = next((b for b in deleting if name and f"<{element}>{name}</{element}>" in b), None)
        if user is None:
            return None
        identifier = re.search(r"<DBInstanceIdentifier>([^<]+)</DBInstanceIdentifier>", user)
        identifier = identifier.group(1) if identifier else "?"
        if action == "DeleteDBSubnetGroup":
            return self.error_response(
                protocol,
                400,
                "InvalidDBSubnetGroupStateFault",
                f"Cannot delete the subnet group '{name}' because at least one database instance: {identifier} is "
                "still using it.",
            )
        if action == "DeleteDBParameterGroup":
            return self.error_response(
                protocol,
                400,
                "InvalidDBParameterGroupState",
                f"One or more database instances are still members of this parameter group {name}, so the group "
                "cannot be deleted",
            )
        return self.error_response(protocol, 400, "DependencyViolation", f"resource {name} has a dependent object")

    # ------------------------------------------------------------------------------------ EFS

    def mount_target_status(self, payload, path="/"):
        data = json.loads(payload)
        targets = data.get("MountTargets")
        single = targets is None
        for target in [data] if single else targets:
            target_id = target.get("MountTargetId")
            if not target_id:
                continue
            with self.lock:
                self.seen_mount_targets[target_id] = dict(target)
                created = self.mount_targets.setdefault(target_id, time.monotonic()) if single else None
                created = created or self.mount_targets.get(target_id)
            if created is not None and target.get("LifeCycleState") == "available" and self.aws_seconds(created) < MOUNT_TARGET:
                target["LifeCycleState"] = "creating"
        if not single:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
            file_system = query.get("FileSystemId", [None])[0]
            listed = {t.get("MountTargetId") for t in targets}
            for ghost in self.mount_targets_being_deleted(file_system):
                if ghost["MountTargetId"] not in listed:
                    targets.append(ghost)
        return json.dumps(data).encode("utf-8")

    def mount_targets_being_deleted(self, file_system):
        """The mount targets of `file_system` deleted less than MOUNT_TARGET_DELETE ago, as `deleting`."""
        with self.lock:
            ghosts = [
                dict(target, LifeCycleState="deleting")
                for deleted, target in self.deleted_mount_targets.values()
                if file_system and target.get("FileSystemId") == file_system
                and self.aws_seconds(deleted) < MOUNT_TARGET_DELETE
            ]
        return ghosts

    def note_mount_target_deleted(self, path):
        match = re.match(r"^/2015-02-01/mount-targets/([^/?]+)$", urllib.parse.urlsplit(path).path)
        if not match:
            return
        with self.lock:
            target = self.seen_mount_targets.get(match.group(1))
            if target is not None:
                self.deleted_mount_targets.setdefault(match.group(1), (time.monotonic(), target))

    def file_system_in_use(self, protocol, path):
        """EFS's refusal to delete a file system whose mount targets are still being deleted."""
        match = re.match(r"^/2015-02-01/file-systems/([^/?]+)$", urllib.parse.urlsplit(path).path)
        if not match or not self.mount_targets_being_deleted(match.group(1)):
            return None
        return self.error_response(
            protocol, 409, "FileSystemInUse", f"File system '{match.group(1)}' has mount targets created in it."
        )

    # ------------------------------------------------------------------------------------ Cloud Map

    def get_operation(self, data):
        operation = data.get("Operation", {})
        with self.lock:
            started = self.operations.get(operation.get("Id"))
        if started is not None and operation.get("Status") == "SUCCESS" and self.aws_seconds(started) < NAMESPACE:
            operation["Status"] = "PENDING"
        return json.dumps(data).encode("utf-8")

    # ------------------------------------------------------------------------------------ ECS

    def note_deregistration_delay(self, body):
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        arn = form.get("TargetGroupArn", [None])[0]
        for key, value in form.items():
            if value == ["deregistration_delay.timeout_seconds"] and key.endswith(".Key"):
                seconds = form.get(key[: -len("Key")] + "Value", [None])[0]
                if arn and seconds is not None:
                    with self.lock:
                        self.deregistration_delays[arn] = float(seconds)

    def note_draining(self, request, answer):
        """Remembers a deleted service, which AWS shows as DRAINING until its tasks have stopped."""
        service = answer.get("service") or {}
        cluster = service.get("clusterArn", "").rsplit("/", 1)[-1] or request.get("cluster", "default")
        name = service.get("serviceName") or request.get("service", "").rsplit("/", 1)[-1]
        groups = [lb.get("targetGroupArn") for lb in service.get("loadBalancers") or []]
        with self.lock:
            delay = max((self.deregistration_delays.get(g, DEREGISTRATION_DELAY) for g in groups), default=0.0)
            current = self.draining.get((cluster, name))
            # Deleted again while still draining (a retry) changes nothing; a service made again and deleted
            # again drains again.
            if current is None or self.aws_seconds(current[0]) >= current[1]:
                self.draining[(cluster, name)] = (time.monotonic(), delay + SERVICE_STOP)
        if service.get("status") == "INACTIVE":
            service["status"] = "DRAINING"
        return json.dumps(answer).encode("utf-8")

    def still_draining(self, key):
        with self.lock:
            deleted = self.draining.get(key)
        return deleted is not None and self.aws_seconds(deleted[0]) < deleted[1]

    def cluster_with_draining_services(self, protocol, body):
        """ECS's refusal to delete a cluster while a deleted service's tasks are still stopping."""
        cluster = json.loads(body or b"{}").get("cluster", "default").rsplit("/", 1)[-1]
        with self.lock:
            keys = [key for key in self.draining if key[0] == cluster]
        if not any(self.still_draining(key) for key in keys):
            return None
        return self.error_response(
            protocol,
            400,
            "ClusterContainsServicesException",
            "The Cluster cannot be deleted while Services are active.",
        )

    def note_deployment(self, request, answer, action):
        service = answer.get("service") or {}
        cluster = service.get("clusterArn", "").rsplit("/", 1)[-1] or request.get("cluster", "default")
        name = service.get("serviceName") or request.get("service") or request.get("serviceName")
        if not name:
            return
        key = (cluster, name)
        task_definition = service.get("taskDefinition", "")
        desired = service.get("desiredCount", 0)
        with self.lock:
            current = self.deployments.get(key)
            new = (
                action == "CreateService"
                or current is None
                or request.get("forceNewDeployment")
                or current["task_definition"] != task_definition
                or current["desired"] != desired
            )
            if new:
                self.serial += 1
                self.deployments[key] = {
                    "id": f"ecs-svc/{self.serial:019d}",
                    "started": time.monotonic(),
                    "task_definition": task_definition,
                    "desired": desired,
                }

    def definition(self, task_definition, headers):
        """What the model needs of a task definition: its images, execution role and secrets."""
        with self.lock:
            if task_definition in self.definitions:
                return self.definitions[task_definition]
        status, answer = self.call_upstream(f"{ECS}.DescribeTaskDefinition", {"taskDefinition": task_definition}, headers)
        found = answer.get("taskDefinition", {}) if status == 200 else {}
        containers = found.get("containerDefinitions", [])
        definition = {
            "images": [(c.get("name", ""), c.get("image", "")) for c in containers],
            "role": found.get("executionRoleArn", ""),
            # A secret may be referenced with a JSON key after its ARN: the secret is the first 7 fields.
            "secrets": sorted({":".join(s.get("valueFrom", "").split(":")[:7]) for c in containers for s in c.get("secrets", [])}),
        }
        with self.lock:
            self.definitions[task_definition] = definition
        return definition

    def images_of(self, task_definition, headers):
        return self.definition(task_definition, headers)["images"]

    def secret_refusal(self, task_definition, headers):
        """The stopped reason of a task that cannot read one of its secrets as it starts; None when it can."""
        definition = self.definition(task_definition, headers)
        role = definition["role"]
        for arn in definition["secrets"]:
            status, described = self.call_upstream(f"{SECRETS}.DescribeSecret", {"SecretId": arn}, headers)
            if status != 200:
                return secret_error(arn, "ResourceNotFoundException: Secrets Manager can't find the specified secret.")
            if described.get("DeletedDate"):
                return secret_error(
                    arn,
                    "InvalidRequestException: You can't perform this operation on the secret because it was marked "
                    "for deletion.",
                )
            status, policy = self.call_upstream(f"{SECRETS}.GetResourcePolicy", {"SecretId": arn}, headers)
            if role and status == 200 and denies_read(policy.get("ResourcePolicy"), role):
                account, name = role.split(":")[4], role.rsplit("/", 1)[-1]
                return secret_error(
                    arn,
                    f"AccessDeniedException: User: arn:aws:sts::{account}:assumed-role/{name}/task is not authorized "
                    f"to perform: secretsmanager:GetSecretValue on resource: {arn} with an explicit deny in a "
                    "resource-based policy",
                )
        return None

    def pullable(self, image, headers):
        match = re.match(r"^[0-9]+\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/([^:@]+)(?::([^@]+))?$", image)
        if not match:
            return True  # a public image: assumed pullable
        repository, tag = match.group(1), match.group(2) or "latest"
        status, answer = self.call_upstream(
            f"{ECR}.DescribeImages", {"repositoryName": repository, "imageIds": [{"imageTag": tag}]}, headers
        )
        return status == 200 and bool(answer.get("imageDetails"))

    def progress(self, key, headers):
        """(deployment, running, pending, rollout state, reason, failed attempts, failure) of a service.

        The failure, when its tasks cannot start, is {"reason": stopped reason, "image": the image that cannot be
        pulled, or None when the image pulls but a secret cannot be read}.
        """
        with self.lock:
            deployment = dict(self.deployments[key])
        desired = deployment["desired"]
        age = self.aws_seconds(deployment["started"])
        if desired == 0:
            return deployment, 0, 0, "COMPLETED", f"ECS deployment {deployment['id']} completed.", 0, None
        missing = next(
            (image for _, image in self.images_of(deployment["task_definition"], headers) if not self.pullable(image, headers)),
            None,
        )
        failure = pull_error(missing) if missing is not None else None
        if failure is None:
            if "secrets" not in deployment:
                refusal = self.secret_refusal(deployment["task_definition"], headers)
                with self.lock:
                    if self.deployments.get(key, {}).get("id") == deployment["id"]:
                        self.deployments[key].setdefault("secrets", refusal)
                deployment["secrets"] = refusal
            failure = deployment["secrets"]
        if failure is None:
            running = desired if age >= TASK_START else 0
            done = age >= TASK_START + DEPLOYMENT
            state = "COMPLETED" if done else "IN_PROGRESS"
            reason = f"ECS deployment {deployment['id']} {'completed' if done else 'in progress'}."
            return deployment, running, desired - running, state, reason, 0, None
        attempts = int(age // PULL_RETRY)
        failed = {"reason": failure, "image": missing}
        if attempts >= breaker_threshold(desired):
            return deployment, 0, 0, "FAILED", CIRCUIT_BREAKER, attempts, failed
        return deployment, 0, desired, "IN_PROGRESS", f"ECS deployment {deployment['id']} in progress.", attempts, failed

    def describe_services(self, data, headers):
        for service in data.get("services", []):
            cluster = service.get("clusterArn", "").rsplit("/", 1)[-1]
            key = (cluster, service.get("serviceName"))
            if service.get("status") == "INACTIVE":
                if self.still_draining(key):
                    service["status"] = "DRAINING"
                continue
            with self.lock:
                known = key in self.deployments
                if known and service.get("desiredCount") != self.deployments[key]["desired"]:
                    known = False
            if not known:
                continue
            deployment, running, pending, state, reason, _, _ = self.progress(key, headers)
            service["runningCount"] = running
            service["pendingCount"] = pending
            service["deployments"] = [
                {
                    "id": deployment["id"],
                    "status": "PRIMARY",
                    "taskDefinition": deployment["task_definition"],
                    "desiredCount": deployment["desired"],
                    "runningCount": running,
                    "pendingCount": pending,
                    "failedTasks": 0,
                    "launchType": "EC2",
                    "rolloutState": state,
                    "rolloutStateReason": reason,
                }
            ]
        return json.dumps(data).encode("utf-8")

    def failed_tasks(self, request, headers):
        """The stopped tasks of a service whose tasks cannot start; None when the model has none."""
        if request.get("desiredStatus") != "STOPPED" or not request.get("serviceName"):
            return None
        key = (request.get("cluster", "default").rsplit("/", 1)[-1], request["serviceName"])
        with self.lock:
            if key not in self.deployments:
                return None
        deployment, _, _, _, _, attempts, failure = self.progress(key, headers)
        if failure is None or attempts == 0:
            return []
        count = min(attempts, int(request.get("maxResults") or 100), 3)
        return [self.failed_task(key, deployment, failure, i) for i in range(count)]

    def failed_task(self, key, deployment, failure, index):
        cluster, service = key
        arn = f"arn:aws:ecs:model:000000000000:task/{cluster}/model{deployment['id'][-8:]}{service}{index}"
        reason, image = failure["reason"], failure["image"]
        # A pull failure is the container's too; a task that cannot read its secrets never got to a container.
        container = {"name": service, "image": image, "lastStatus": "STOPPED", "reason": reason}
        if image is None:
            container = {"name": service, "lastStatus": "STOPPED"}
        return {
            "taskArn": arn,
            "clusterArn": cluster,
            "group": f"service:{service}",
            "taskDefinitionArn": deployment["task_definition"],
            "lastStatus": "STOPPED",
            "desiredStatus": "STOPPED",
            "stopCode": "TaskFailedToStart",
            "stoppedReason": reason,
            "containers": [container],
        }

    def describe_failed(self, arns, headers):
        if not arns or not all(":task/" in a and "/model" in a for a in arns):
            return None
        answers = []
        with self.lock:
            keys = list(self.deployments)
        for key in keys:
            for task in self.failed_tasks({"desiredStatus": "STOPPED", "cluster": key[0], "serviceName": key[1]}, headers) or []:
                if task["taskArn"] in arns:
                    answers.append(task)
        return answers


def json_answer(data):
    payload = json.dumps(data).encode("utf-8")
    return 200, {"Content-Type": "application/x-amz-json-1.1"}, payload
