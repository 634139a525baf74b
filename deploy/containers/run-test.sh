#!/usr/bin/env bash
# The container test (`make test-containers`): the three images built from
# deploy/docker/Dockerfile as shipped, run from the rendered production and dev overlays with
# podman on this one host, and checked from the outside as the kubelet and a browser see them.
#
#   sudo make test-containers        (as root: podman runs the pods on the host network, and
#                                     the secret volumes are laid out with the pods' fsGroup)
#
# 1. Packages podman, runc, mmdebstrap, uidmap, slirp4netns, python3-yaml and openssl are
#    installed from Debian's packages when missing. No image registry is used.
# 2. Binaries: `cargo build --workspace --bins`, the debug build `make test-rust` makes anyway
#    (a release build costs minutes more on two cores; see docs/operations.md), stripped of
#    their debug info, and the web app (web/dist, rebuilt when older than web/ or proto/).
# 3. Images: the runtime base (deploy/containers/base-image.sh, cached), then for each service
#    `podman build --pull=never --build-arg BINARIES=prebuilt`, tagged
#    localhost/presence-<service>:host-test as deploy/k8s/tests/single-host names them.
# 4. For the production overlay, then the dev overlay (deploy/k8s/tests/host-<overlay>): write
#    the test-time Secret values (the host's PostgreSQL with a fresh database, the host's Redis,
#    an Ed25519 key pair, a page-token secret), render with kustomize, keep what podman runs
#    (deploy/containers/kube-play.py), run the migration Job's Pod until it exits 0, start the
#    Deployments, and check, each with a deadline:
#      - every gRPC probe answers SERVING on the port it names;
#      - the accounts are created as docs/operations.md does it, in the running container;
#      - the web app, a gRPC-Web sign-in and ping through the gateway that writes the user's
#        Redis key, and an admin who sees the user online (gateway/tests/grpc_web/deployed.rs);
#      - every container is still running, never restarted.
#    A failure prints every container's log. Everything is removed afterwards, on failure too:
#    pods, podman secrets and volumes, the test database, the Redis keys, the secret files.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
here=deploy/containers
work=$root/.local/containers
export CONTAINERS_CONF=$root/$here/containers.conf
OVERLAYS=(production dev)
SERVICES=(activity-service admin-service gateway)
TAG=host-test
PASSWORD='Test1234!'
started=$SECONDS

log() { echo "containers: $*" >&2; }
fail() {
  log "FAILED: $*"
  exit 1
}

if [ "$(id -u)" -ne 0 ]; then
  fail "needs root: podman runs the pods with host networking and runc, and the secret volumes get the pods' fsGroup (sudo make test-containers; CI runs as root)"
fi

# --- 1. packages ---------------------------------------------------------------------------------
missing=()
for tool in podman:podman runc:runc mmdebstrap:mmdebstrap newuidmap:uidmap slirp4netns:slirp4netns openssl:openssl; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
# kube-play.py needs PyYAML: the first python3 on PATH if it has it, else Debian's with python3-yaml.
python=python3
if ! python3 -c 'import yaml' 2>/dev/null; then
  python=/usr/bin/python3
  /usr/bin/python3 -c 'import yaml' 2>/dev/null || missing+=(python3 python3-yaml)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]} from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
podman info >/dev/null 2>&1 || fail "podman does not work here: $(podman info 2>&1 | tail -n 3)"
# kubectl's built-in kustomize v5, as deploy/check-k8s.sh renders (it says how to get one).
kubectl kustomize --help >/dev/null 2>&1 || fail "kubectl (>= 1.27, with kustomize v5) is needed to render the overlays"
eval "$("$root/deploy/local/services.sh")"

# --- 2. binaries and the web app -----------------------------------------------------------------
cargo build --workspace --bins
if [ ! -f web/dist/index.html ] || [ -n "$(find web proto -type f -newer web/dist/index.html \
    -not -path 'web/node_modules/*' -not -path 'web/dist/*' -print -quit)" ]; then
  log "building the web app"
  (cd web && { { [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ]; } \
    || npm ci --no-audit --no-fund; } && npm run build) >&2
fi
prebuilt=$work/prebuilt
rm -rf "$prebuilt"
mkdir -p "$prebuilt/bin"
for service in "${SERVICES[@]}"; do
  # Without debug info: about a tenth of the size, the image the same otherwise.
  objcopy --strip-debug "target/debug/$service" "$prebuilt/bin/$service"
done
cp -r web/dist "$prebuilt/web"

# --- 3. images -----------------------------------------------------------------------------------
bash "$here/base-image.sh"
dangling() { podman images --quiet --no-trunc --filter dangling=true | sort; }
dangling_before=$(dangling)
for service in "${SERVICES[@]}"; do
  podman build --quiet --pull=never -f deploy/docker/Dockerfile \
    --build-arg SERVICE="$service" --build-arg BINARIES=prebuilt \
    --build-context prebuilt="$prebuilt" -t "localhost/presence-$service:$TAG" . >/dev/null
done
# The builds' intermediate stages and the images they replaced; nobody else's.
comm -13 <(echo "$dangling_before") <(dangling) | xargs -r podman rmi --force >/dev/null 2>&1 || true
log "images built ($((SECONDS - started)) s so far)"

# --- 4. each overlay -----------------------------------------------------------------------------
overlay='' out='' secrets_dir='' database=''
containers() { podman ps -a --filter label=app.kubernetes.io/instance=presence --format '{{.Names}}'; }
container_of() {
  podman ps -a --filter "label=app.kubernetes.io/name=$1" --format '{{.Names}}' | head -n 1
}

show_logs() {
  local name
  podman ps -a --filter label=app.kubernetes.io/instance=presence >&2 || true
  for name in $(containers); do
    echo "---- $name: $(podman inspect --format '{{.State.Status}}, exit {{.State.ExitCode}}, restarts {{.RestartCount}}' "$name")" >&2
    podman logs --tail 30 "$name" >&2 2>&1 || true
  done
}

# Removes what an overlay's run made in podman, PostgreSQL and Redis (also a killed run's).
remove_deployment() {
  local name
  for name in migrate services; do
    if [ -f "$out/$name.yaml" ]; then podman kube down "$out/$name.yaml" >/dev/null 2>&1 || true; fi
  done
  for name in $(containers); do podman rm -f "$name" >/dev/null 2>&1 || true; done
  # shellcheck disable=SC2153 # SECRETS, VOLUMES and KEY_PREFIX come from facts.sh
  for name in ${SECRETS:-}; do podman secret rm "$name" >/dev/null 2>&1 || true; done
  for name in ${VOLUMES:-}; do podman volume rm -f "$name" >/dev/null 2>&1 || true; done
  if [ -n "${KEY_PREFIX:-}" ]; then
    redis-cli -u "$REDIS_URL" --scan --pattern "${KEY_PREFIX}*" | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null
  fi
  PGOPTIONS=--client-min-messages=warning \
    psql "$DATABASE_SERVER_URL/postgres" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null
}

teardown() {
  [ -n "$overlay" ] || return 0
  remove_deployment
  # The key material: the Secrets' files, the volumes laid out from them, the rendered Secrets.
  rm -rf "$secrets_dir" "$out/secrets" "$out/volumes" "$out/rendered.yaml"
}

on_exit() {
  local status=$?
  trap - EXIT
  if [ "$status" -ne 0 ] && [ -n "$overlay" ]; then
    log "$overlay: the containers' state and logs:"
    show_logs
  fi
  teardown
  exit "$status"
}
trap on_exit EXIT
# Interrupted (Ctrl-C, a CI timeout): exit, so the EXIT trap still tears down.
trap 'exit 130' INT TERM

# Fails, naming what is in the way, if anything already listens where the overlay will.
ports_free() {
  local address
  for address in $LISTEN; do
    if timeout 1 bash -c "exec 3<>/dev/tcp/${address%:*}/${address##*:}" 2>/dev/null; then
      fail "$overlay: $address is already in use (a stray container? podman ps -a)"
    fi
  done
}

run_overlay() {
  overlay=$1
  local begun=$SECONDS kube=deploy/k8s/tests/host-$overlay migrate status name state probing restarts
  out=$work/$overlay
  secrets_dir=$kube/secrets
  database=presence_host_test_$overlay
  unset SECRETS VOLUMES KEY_PREFIX
  log "$overlay: rendering $kube"
  rm -rf "$out" "$secrets_dir"
  mkdir -p "$out"
  (
    umask 077
    mkdir -p "$secrets_dir"
    printf '%s' "$DATABASE_SERVER_URL/$database" > "$secrets_dir/DATABASE_URL"
    printf '%s' "$REDIS_URL" > "$secrets_dir/REDIS_URL"
    if [ "$overlay" = production ]; then
      openssl genpkey -algorithm ed25519 -out "$secrets_dir/private.pem" 2>/dev/null
      openssl pkey -in "$secrets_dir/private.pem" -pubout -out "$secrets_dir/public.pem"
      openssl rand -hex 32 | tr -d '\n' > "$secrets_dir/PRESENCE_PAGE_TOKEN_SECRET"
    fi
  )
  kubectl kustomize "$kube" > "$out/rendered.yaml"
  "$python" "$here/kube-play.py" "$out/rendered.yaml" "$out"
  # shellcheck source=/dev/null # written by kube-play.py
  . "$out/facts.sh"
  rm -rf "$secrets_dir"
  remove_deployment # a killed run's leftovers, if any
  ports_free
  for name in $SECRETS; do
    podman secret create "$name" "$out/secrets/$name.json" >/dev/null
  done
  rm -rf "$out/secrets"

  podman kube play --network host "$out/migrate.yaml" >/dev/null
  migrate=$(container_of "$MIGRATE_POD")
  status=$(timeout 300 podman wait "$migrate") || fail "$overlay: the migration did not finish within 300 s"
  [ "$status" = 0 ] || fail "$overlay: the migration exited with status $status"
  podman kube down "$out/migrate.yaml" >/dev/null
  log "$overlay: migrated"

  podman kube play --network host "$out/services.yaml" >/dev/null
  export DEPLOYED_PROBES=$PROBES DEPLOYED_GATEWAY=$GATEWAY_ADDR DEPLOYED_REDIS_URL=$REDIS_URL \
    DEPLOYED_KEY_PREFIX=$KEY_PREFIX DEPLOYED_USER=usertest1 DEPLOYED_ADMIN=admintest1 \
    DEPLOYED_PASSWORD=$PASSWORD
  # The probes' check, while watching for a container that exits (podman restarts it at once,
  # so a crash loop shows as restarts): that fails the run now, not at the probes' deadline.
  setsid bash -c "$(declare -f deployed_test); deployed_test every_probe_of_the_deployed_containers_answers_serving" &
  probing=$!
  while kill -0 "$probing" 2>/dev/null; do
    for name in $DEPLOYMENTS; do
      restarts=$(podman inspect --format '{{.RestartCount}}' "$(container_of "$name")")
      if [ "$restarts" != 0 ]; then
        kill -TERM -- "-$probing" 2>/dev/null || true
        wait "$probing" 2>/dev/null || true
        fail "$overlay: $name exited and was restarted before its probes answered (its log below)"
      fi
    done
    sleep 1
  done
  wait "$probing" || fail "$overlay: a probe never answered SERVING (above)"
  log "$overlay: every probe answers SERVING ($PROBES)"

  # As docs/operations.md creates accounts: the binary in the running activity container.
  for account in usertest1:user admintest1:admin; do
    printf '%s\n' "$PASSWORD" | podman exec -i "$(container_of activity-service)" \
      activity-service user upsert --username "${account%:*}" --role "${account#*:}" \
      --display-name "${account%:*}" >/dev/null \
      || fail "$overlay: could not create the account ${account%:*} in the activity-service container"
  done

  deployed_test a_user_signed_in_through_the_deployed_gateway_is_online_for_an_admin \
    || fail "$overlay: a browser's sign-in, ping or an admin's listing through the gateway failed (above)"
  log "$overlay: a gRPC-Web sign-in and ping through the gateway wrote the activity key; the admin sees the user online"

  for name in $DEPLOYMENTS; do
    state=$(podman inspect --format '{{.State.Status}} {{.RestartCount}}' "$(container_of "$name")")
    [ "$state" = "running 0" ] || fail "$overlay: $name is not running unrestarted after the checks (state, restarts: $state)"
  done
  log "$overlay: passed in $((SECONDS - begun)) s (every container still running, none restarted)"
  teardown
  overlay=''
}

# The checks of gateway/tests/grpc_web/deployed.rs, built as `make test-rust` builds the tests.
deployed_test() {
  DATABASE_URL=$TEST_DATABASE_URL cargo test --quiet --workspace --test grpc_web -- \
    --ignored --exact "deployed::$1" >&2
}

for overlay_name in "${OVERLAYS[@]}"; do
  run_overlay "$overlay_name"
done
log "passed: ${OVERLAYS[*]} overlays in $((SECONDS - started)) s"
