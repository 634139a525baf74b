#!/usr/bin/env python3
"""Turns rendered manifests into what `podman kube play` (podman 4.3, Debian 12) runs as a
kubelet would, and lists what the checks need.

    python3 deploy/containers/kube-play.py rendered.yaml OUT_DIR

Kinds. podman runs Pods and Deployments with the ConfigMaps they read, and nothing a cluster
provides: Services, autoscalers, disruption budgets, network policies, the Ingress, service
accounts and namespaces mean nothing on one host, so they are left out (and listed). Any other
kind is refused, so a workload that would not run (a StatefulSet, say) is never skipped
silently. podman has no Jobs: the migration Job becomes the Pod of its template, which is what
the Job controller creates (one attempt: the database is already up).

Secrets. podman 4.3 stores a Secret of a kube file in a form its own env lookup cannot read
("is not valid JSON"), and mounts secret volumes wrongly (base64 text, every key, no mode; it
crashes without `optional`). So:
  - each Secret goes to secrets/<name>.json in the form podman's env lookup reads (key ->
    base64 value), for `podman secret create`; secretKeyRef and optional work as in Kubernetes;
  - each secret volume is made as the kubelet makes it, in volumes/<pod>/<volume>/: the listed
    items only (all keys without items), mode defaultMode (0644 when unset), group fsGroup, and
    mounted from there (hostPath) with the container's own volumeMount, read-only as written.
Ports. On the host network a container listens on the host's ports itself, but podman 4.3
publishes every containerPort (and refuses to with --network host), so the declarations are
left out; the probes still name the ports, and the checks use those.

emptyDir volumes get a name of their pod's own: podman makes a named volume per emptyDir name,
so every pod's "tmp" would otherwise be one directory shared by all.

Writes, in OUT_DIR:
  migrate.yaml   the Job's Pod and the ConfigMaps
  services.yaml  the Deployments and the ConfigMaps
  secrets/, volumes/  as above (remove them afterwards: they hold the keys)
  facts.sh       shell assignments for the checks, read from the manifests themselves:
                 DEPLOYMENTS, MIGRATE_POD, SECRETS (names), VOLUMES (podman volume names),
                 KEY_PREFIX (presence-config's Redis prefix), LISTEN (every PRESENCE_*_ADDR
                 the containers listen on), GATEWAY_ADDR (the gateway's
                 PRESENCE_GATEWAY_ADDR), PROBES (every distinct gRPC probe of every container,
                 as `container=127.0.0.1:port/service`)

Run as root (it sets file ownership). Needs PyYAML (Debian's python3-yaml).
"""

import base64
import json
import os
import shlex
import sys

import yaml

CLUSTER_ONLY = {
    "Namespace", "ServiceAccount", "Service", "HorizontalPodAutoscaler",
    "PodDisruptionBudget", "NetworkPolicy", "Ingress",
}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def fail(message):
    sys.exit(f"kube-play: {message}")


def env_value(container, name):
    for entry in container.get("env", []):
        if entry["name"] == name and "value" in entry:
            return entry["value"]
    return None


def secret_data(secret):
    """A Secret's keys and decoded values, from data and stringData."""
    values = {key: base64.b64decode(value) for key, value in secret.get("data", {}).items()}
    values.update({key: value.encode() for key, value in secret.get("stringData", {}).items()})
    return values


def materialise_secret_volumes(pod_name, spec, secrets, out_dir):
    """Replaces the pod's secret volumes by directories laid out as the kubelet lays them out."""
    fs_group = spec.get("securityContext", {}).get("fsGroup")
    for volume in spec.get("volumes", []):
        source = volume.get("secret")
        if source is None:
            continue
        name = source["secretName"]
        if name not in secrets:
            if source.get("optional"):
                continue
            fail(f"{pod_name}: volume {volume['name']} needs Secret {name}, which is not in the manifests")
        values = secrets[name]
        items = source.get("items") or [{"key": key, "path": key} for key in values]
        directory = os.path.join(out_dir, "volumes", pod_name, volume["name"])
        os.makedirs(directory, mode=0o755, exist_ok=True)
        for item in items:
            if item["key"] not in values:
                fail(f"{pod_name}: Secret {name} has no key {item['key']}")
            path = os.path.join(directory, item["path"])
            with open(path, "wb") as f:
                f.write(values[item["key"]])
            os.chmod(path, item.get("mode", source.get("defaultMode", 0o644)))
            if fs_group is not None:
                os.chown(path, 0, fs_group)
        del volume["secret"]
        volume["hostPath"] = {"path": os.path.abspath(directory), "type": "Directory"}


def name_empty_dirs(pod_name, spec, volumes):
    """Gives each emptyDir a name of its pod's own (podman names its volume after it)."""
    renamed = {}
    for volume in spec.get("volumes", []):
        if "emptyDir" in volume:
            renamed[volume["name"]] = f"{pod_name}-{volume['name']}"
            volume["name"] = renamed[volume["name"]]
            volumes.append(volume["name"])
    for container in spec.get("initContainers", []) + spec["containers"]:
        for mount in container.get("volumeMounts", []):
            mount["name"] = renamed.get(mount["name"], mount["name"])


def main(rendered, out_dir):
    with open(rendered) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]

    config_maps, secrets, jobs, deployments, left_out = [], {}, [], [], {}
    for doc in documents:
        kind = doc["kind"]
        if kind == "ConfigMap":
            config_maps.append(doc)
        elif kind == "Secret":
            secrets[doc["metadata"]["name"]] = secret_data(doc)
        elif kind == "Job":
            jobs.append(doc)
        elif kind == "Deployment":
            deployments.append(doc)
        elif kind in CLUSTER_ONLY:
            left_out[kind] = left_out.get(kind, 0) + 1
        else:
            fail(f"{kind} {doc['metadata']['name']}: podman kube play cannot run it on one host")
    if len(jobs) != 1 or not deployments:
        fail(f"expected one Job (the migration) and Deployments, got {len(jobs)} and {len(deployments)}")
    print("kube-play: left out (cluster only): "
          + ", ".join(f"{n} {k}" for k, n in sorted(left_out.items())), file=sys.stderr)

    job = jobs[0]
    template = job["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": job["metadata"]["name"],
            "labels": template.get("metadata", {}).get("labels", {}),
        },
        "spec": template["spec"],
    }

    volumes = []
    for name, spec in [(pod["metadata"]["name"], pod["spec"])] + [
        (d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in deployments
    ]:
        materialise_secret_volumes(name, spec, secrets, out_dir)
        name_empty_dirs(name, spec, volumes)
        for container in spec["containers"]:
            container.pop("ports", None)

    probes, listen, key_prefix, gateway_addr = [], [], None, None
    for config_map in config_maps:
        if config_map["metadata"]["name"].startswith("presence-config"):
            key_prefix = config_map.get("data", {}).get("PRESENCE_REDIS_KEY_PREFIX")
    for deployment in deployments:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            name = container["name"]
            gateway_addr = gateway_addr or env_value(container, "PRESENCE_GATEWAY_ADDR")
            listen += [e["value"] for e in container.get("env", [])
                       if e["name"].startswith("PRESENCE_") and e["name"].endswith("_ADDR") and "value" in e]
            for probe in PROBES:
                grpc = container.get(probe, {}).get("grpc")
                if grpc is None:
                    fail(f"{name}: {probe} is not a gRPC probe")
                # Host network: the pod's address is the host's; the services listen on loopback.
                entry = f"{name}=127.0.0.1:{grpc['port']}/{grpc.get('service', '')}"
                if entry not in probes:
                    probes.append(entry)
    if key_prefix is None or gateway_addr is None:
        fail("no presence-config ConfigMap with PRESENCE_REDIS_KEY_PREFIX, or no PRESENCE_GATEWAY_ADDR")

    os.makedirs(os.path.join(out_dir, "secrets"), mode=0o700, exist_ok=True)
    for name, values in secrets.items():
        path = os.path.join(out_dir, "secrets", f"{name}.json")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump({key: base64.b64encode(value).decode() for key, value in values.items()}, f)
    with open(os.path.join(out_dir, "migrate.yaml"), "w") as f:
        yaml.safe_dump_all(config_maps + [pod], f, sort_keys=False)
    with open(os.path.join(out_dir, "services.yaml"), "w") as f:
        yaml.safe_dump_all(config_maps + deployments, f, sort_keys=False)
    facts = {
        "DEPLOYMENTS": " ".join(d["metadata"]["name"] for d in deployments),
        "MIGRATE_POD": pod["metadata"]["name"],
        "SECRETS": " ".join(sorted(secrets)),
        "VOLUMES": " ".join(volumes),
        "KEY_PREFIX": key_prefix,
        "LISTEN": " ".join(listen),
        "GATEWAY_ADDR": gateway_addr,
        "PROBES": " ".join(probes),
    }
    with open(os.path.join(out_dir, "facts.sh"), "w") as f:
        f.writelines(f"{name}={shlex.quote(value)}\n" for name, value in facts.items())


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
