#!/usr/bin/env bash
# Manages the local AWS emulator (moto_server) used by the demo and the acceptance tests.
#   start   start it on a free loopback port (no-op if it already runs and answers)
#   stop    stop it and wait until the process is gone
#   env     print `export` lines pointing the AWS SDK (and the test harness) at it
#   status  say whether it runs; exit 1 if not
# State lives in $DATAVAULT_EMULATOR_RUN_DIR (default <toolchain dir>/run): moto.pid, moto.port, moto.log.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TC="${DATAVAULT_TOOLCHAIN_DIR:-$ROOT/.toolchain}"
RUN="${DATAVAULT_EMULATOR_RUN_DIR:-$TC/run}"
PIDF="$RUN/moto.pid" PORTF="$RUN/moto.port" LOG="$RUN/moto.log"

pid() { cat "$PIDF" 2>/dev/null || true; }
port() { cat "$PORTF" 2>/dev/null || true; }
# Alive and really our moto_server (guards against a recycled pid).
alive() { local p; p="$(pid)"; [[ -n "$p" ]] && grep -qa moto_server "/proc/$p/cmdline" 2>/dev/null; }
answers() { [[ -n "$(port)" ]] && curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$(port)/moto-api/"; }

stop() {
    if alive; then
        local p i; p="$(pid)"
        echo "emulator: stopping pid $p"
        kill "$p" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do alive || break; sleep 0.1; done
        if alive; then kill -9 "$p" 2>/dev/null || true; sleep 0.2; fi
    fi
    rm -f "$PIDF" "$PORTF"
}

# Every real default VPC has an internet gateway, a 0.0.0.0/0 route to it in its main route table and
# default subnets that give instances public addresses (Amazon VPC User Guide, "Default VPCs"); moto's has
# no gateway and no route, so the stack's plan would warn that its instances cannot reach AWS. The test
# harness does the same after each reset of the emulator (acceptance-tests/src/emulator.rs).
like_aws() {
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "$TC/venv/bin/python" - "$1" "${AWS_REGION:-eu-west-2}" <<'PY'
import sys

import boto3

url, region = sys.argv[1], sys.argv[2]
ec2 = boto3.client("ec2", endpoint_url=url, region_name=region)
for vpc in ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]:
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc["VpcId"])
    filters = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}, {"Name": "association.main", "Values": ["true"]}]
    for table in ec2.describe_route_tables(Filters=filters)["RouteTables"]:
        ec2.create_route(RouteTableId=table["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
PY
}

start() {
    if alive && answers; then
        echo "emulator: already running (pid $(pid)) at http://127.0.0.1:$(port)"
        return 0
    fi
    stop
    "$ROOT/scripts/toolchain.sh" >/dev/null
    mkdir -p "$RUN"
    local port i
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    # moto_server runs through scripts/moto_server_like_aws.py (one correction where moto fails a call AWS
    # cannot fail; see there), so $! is the Python process itself. AWS managed IAM policies (such as
    # AmazonEC2ContainerServiceforEC2Role, which the stack attaches) exist in every real account; moto only
    # loads them when asked.
    MOTO_IAM_LOAD_MANAGED_POLICIES=true nohup "$TC/venv/bin/python" "$ROOT/scripts/moto_server_like_aws.py" \
        -H 127.0.0.1 -p "$port" >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDF"
    echo "$port" >"$PORTF"
    for ((i = 0; i < 300; i++)); do
        if answers; then
            echo "emulator: started (pid $(pid)) at http://127.0.0.1:$port, log $LOG"
            like_aws "http://127.0.0.1:$port"
            return 0
        fi
        alive || break
        sleep 0.1
    done
    echo "emulator: moto_server did not come up on port $port; last log lines:" >&2
    tail -n 20 "$LOG" >&2 || true
    stop
    return 1
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status)
    if alive && answers; then echo "emulator: running (pid $(pid)) at http://127.0.0.1:$(port)"
    else echo "emulator: not running"; exit 1; fi ;;
env)
    alive || { echo "emulator: not running (scripts/emulator.sh start)" >&2; exit 1; }
    url="http://127.0.0.1:$(port)"
    cat <<ENV
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE
export AWS_ENDPOINT_URL=$url
export DATAVAULT_EMULATOR_URL=$url
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=eu-west-2
export AWS_DEFAULT_REGION=eu-west-2
export AWS_EC2_METADATA_DISABLED=true
export CHECKPOINT_DISABLE=1
ENV
    ;;
*) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
