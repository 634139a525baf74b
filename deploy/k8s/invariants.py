"""The promises the presence manifests make, checked on a rendered overlay.

checkov checks generic hygiene; this checks what docs/operations.md tells operators they get,
so a later edit cannot quietly drop it: app.kubernetes.io labels everywhere, native gRPC probes,
a termination grace period longer than preStop + drain, a restricted security context, requests
and limits, a Service / PodDisruptionBudget / autoscaler per service, a headless Service the
gateway balances over for each upstream, default-deny networking, and no real-looking secret
in the repository.

    python invariants.py OVERLAY RENDERED.yaml     (OVERLAY: base, dev or production)

Run by deploy/check-k8s.sh with the virtualenv's Python (PyYAML comes with checkov).
"""

import base64
import sys

import yaml

SERVICES = {"activity-service": 50051, "admin-service": 50052, "gateway": 8080}
# The gateway's setting naming each upstream service.
UPSTREAM_URLS = {"activity-service": "PRESENCE_ACTIVITY_URL", "admin-service": "PRESENCE_ADMIN_URL"}
# What the services do on SIGTERM: stop accepting, then drain in-flight calls and streams.
DRAIN_SECONDS = 20
COMMON_LABELS = ("name", "instance", "part-of", "managed-by")


def main(overlay: str, path: str) -> int:
    with open(path, encoding="utf-8") as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    errors: list[str] = []

    def need(condition: bool, message: str) -> None:
        if not condition:
            errors.append(message)

    by_kind: dict[str, dict[str, dict]] = {}
    for o in objects:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
        labels = o["metadata"].get("labels", {})
        for label in COMMON_LABELS:
            need(f"app.kubernetes.io/{label}" in labels,
                 f"{o['kind']}/{o['metadata']['name']}: no app.kubernetes.io/{label} label")

    workloads = [o for kind in ("Deployment", "StatefulSet", "Job")
                 for o in by_kind.get(kind, {}).values()]
    for w in workloads:
        where = f"{w['kind']}/{w['metadata']['name']}"
        pod = w["spec"]["template"]["spec"]
        need(pod.get("automountServiceAccountToken") is False, f"{where}: mounts a token")
        psc = pod.get("securityContext", {})
        need(psc.get("runAsNonRoot") is True, f"{where}: pod may run as root")
        need(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
             f"{where}: pod has no RuntimeDefault seccomp profile")
        for c in pod["containers"] + pod.get("initContainers", []):
            cwhere = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})
            need(sc.get("allowPrivilegeEscalation") is False, f"{cwhere}: privilege escalation")
            need(sc.get("readOnlyRootFilesystem") is True, f"{cwhere}: writable root filesystem")
            need(sc.get("capabilities", {}).get("drop") == ["ALL"],
                 f"{cwhere}: capabilities not all dropped")
            for bound in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    need(resource in c.get("resources", {}).get(bound, {}),
                         f"{cwhere}: no {resource} {bound}")

    deployments = by_kind.get("Deployment", {})
    for name, port in SERVICES.items():
        d = deployments.get(name)
        need(d is not None, f"Deployment/{name} missing")
        if d is None:
            continue
        template_labels = d["spec"]["template"]["metadata"]["labels"]
        for label in ("component", "version"):
            need(f"app.kubernetes.io/{label}" in template_labels,
                 f"Deployment/{name}: pods have no app.kubernetes.io/{label} label")
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            need(c.get(probe, {}).get("grpc", {}).get("port") == port,
                 f"Deployment/{name}: {probe} is not a native gRPC probe on {port}")
        need(port in [p["containerPort"] for p in c.get("ports", [])],
             f"Deployment/{name}: port {port} not declared")
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        need(pre_stop > 0, f"Deployment/{name}: no preStop sleep")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        need(grace > pre_stop + DRAIN_SECONDS,
             f"Deployment/{name}: terminationGracePeriodSeconds {grace} <= preStop {pre_stop}"
             f" + drain {DRAIN_SECONDS}")
        selector = d["spec"]["selector"]["matchLabels"]
        service = by_kind.get("Service", {}).get(name)
        need(service is not None and service["spec"]["selector"] == selector,
             f"Service/{name} missing or not selecting the Deployment's pods")
        pdb = by_kind.get("PodDisruptionBudget", {}).get(name)
        need(pdb is not None and pdb["spec"]["selector"]["matchLabels"] == selector,
             f"PodDisruptionBudget/{name} missing or not selecting the Deployment's pods")
        hpa = by_kind.get("HorizontalPodAutoscaler", {}).get(name)
        if overlay == "dev":
            need(d["spec"].get("replicas") == 1, f"Deployment/{name}: dev runs one replica")
        else:
            need(hpa is not None and hpa["apiVersion"] == "autoscaling/v2"
                 and hpa["spec"]["scaleTargetRef"]["name"] == name,
                 f"HorizontalPodAutoscaler/{name} (autoscaling/v2) missing")
            need("replicas" not in d["spec"],
                 f"Deployment/{name}: sets replicas, which fights its autoscaler")
        if overlay == "production":
            need(hpa is not None and hpa["spec"]["minReplicas"] >= 3,
                 f"HorizontalPodAutoscaler/{name}: production keeps at least 3 replicas")

    for name in SERVICES:
        d = deployments.get(name)
        if d is not None:
            errors.extend(token_key_problems(name, d, by_kind.get("ConfigMap", {})))
            # Behind the ingress (gateway) and the gateway (activity service), the client's
            # address is known only from trusted proxies; without them, per-client limits
            # are shared by everyone behind one pod.
            if overlay != "base" and name in ("gateway", "activity-service"):
                need(bool(settings_of(d, by_kind.get("ConfigMap", {}))
                          .get("PRESENCE_TRUSTED_PROXIES")),
                     f"Deployment/{name}: PRESENCE_TRUSTED_PROXIES is empty")

    gateway = deployments.get("gateway")
    if gateway is not None:
        errors.extend(upstream_problems(gateway, deployments, by_kind.get("Service", {}),
                                        by_kind.get("ConfigMap", {})))

    job = by_kind.get("Job", {}).get("presence-migrate")
    need(job is not None and job["spec"]["template"]["spec"]["containers"][0].get("args")
         == ["migrate"], "Job/presence-migrate missing or not running `migrate`")

    deny = by_kind.get("NetworkPolicy", {}).get("default-deny-all")
    need(deny is not None and deny["spec"]["podSelector"] == {}
         and sorted(deny["spec"]["policyTypes"]) == ["Egress", "Ingress"],
         "NetworkPolicy/default-deny-all missing or not denying both directions")
    if overlay != "base":
        need(any(o["kind"] == "Namespace" for o in objects), f"{overlay}: no Namespace")
        need("datastore-clients-egress" in by_kind.get("NetworkPolicy", {}),
             f"{overlay}: no egress path from the services to the datastores")

    ingress = by_kind.get("Ingress", {}).get("gateway")
    need(ingress is not None, "Ingress/gateway missing")

    secrets = by_kind.get("Secret", {})
    if overlay == "production":
        need(not secrets, "production renders Secrets: they belong to the operator, not git")
    for name, secret in secrets.items():
        for key, value in secret.get("data", {}).items():
            text = base64.b64decode(value).decode("utf-8", "replace")
            need("dev-only" in text or key in ("POSTGRES_USER", "POSTGRES_DB"),
                 f"Secret/{name} key {key}: a committed value must say it is dev-only")

    for e in errors:
        print(f"   invariant: {e}", file=sys.stderr)
    return 1 if errors else 0


def settings_of(deployment: dict, config_maps: dict) -> dict[str, str]:
    """The plain settings of a Deployment's container: its ConfigMaps, then its own values."""
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    settings: dict[str, str] = {}
    for source in c.get("envFrom", []):
        ref = source.get("configMapRef", {}).get("name")
        settings.update(config_maps.get(ref, {}).get("data", {}))
    settings.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
    return settings


def upstream_problems(gateway: dict, deployments: dict, services: dict,
                      config_maps: dict) -> list[str]:
    """The gateway balances over the addresses an upstream's host name resolves to: the name
    must be a headless Service (no virtual IP, one address per ready pod) selecting that
    upstream's pods on its port, or every connection stays on the pods that answered first."""
    settings = settings_of(gateway, config_maps)
    problems = []
    for name, variable in UPSTREAM_URLS.items():
        url = settings.get(variable, "")
        host, _, port = url.removeprefix("http://").partition(":")
        service = services.get(host)
        where = f"Deployment/gateway: {variable}={url}"
        if service is None:
            problems.append(f"{where} names no Service of the manifests")
            continue
        if service["spec"].get("clusterIP") != "None":
            problems.append(f"{where}: Service/{host} is not headless (clusterIP: None)")
        d = deployments.get(name)
        if d is not None and service["spec"].get("selector") != d["spec"]["selector"]["matchLabels"]:
            problems.append(f"{where}: Service/{host} does not select the pods of {name}")
        if port != str(SERVICES[name]) or SERVICES[name] not in [
                p["port"] for p in service["spec"].get("ports", [])]:
            problems.append(f"{where}: not port {SERVICES[name]} of Service/{host}")
    return problems


def token_key_problems(name: str, deployment: dict, config_maps: dict) -> list[str]:
    """Every service verifies tokens (the gateway too, for its per-user ping limit), so each
    must get the verifying key its algorithm needs: the shared secret from a Secret with
    HS256, or a mounted public key file with RS256/EdDSA (and the signer its private key)."""
    pod = deployment["spec"]["template"]["spec"]
    c = pod["containers"][0]
    settings = settings_of(deployment, config_maps)
    env = {e["name"]: e for e in c.get("env", [])}
    where = f"Deployment/{name}"
    algorithm = settings.get("PRESENCE_JWT_ALGORITHM", "HS256")
    if algorithm == "HS256":
        secret = env.get("PRESENCE_JWT_SECRET", {}).get("valueFrom", {}).get("secretKeyRef")
        return [] if secret else [f"{where}: HS256 but no PRESENCE_JWT_SECRET from a Secret"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    problems = []
    wanted = [("PRESENCE_JWT_PUBLIC_KEY_FILE", True),
              ("PRESENCE_JWT_PRIVATE_KEY_FILE", name == "activity-service")]
    for variable, required in wanted:
        path = settings.get(variable)
        if not path:
            if required:
                problems.append(f"{where}: {algorithm} but {variable} is not set")
            continue
        directory, _, file = path.rpartition("/")
        mounted = False
        for m in c.get("volumeMounts", []):
            secret = volumes.get(m["name"], {}).get("secret")
            if m["mountPath"].rstrip("/") == directory and secret is not None:
                items = secret.get("items")
                mounted = items is None or any(i["path"] == file for i in items)
        if not mounted:
            problems.append(f"{where}: {variable}={path} is not mounted from a Secret")
    return problems


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
