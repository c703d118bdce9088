#!/usr/bin/env python3
"""Runs compose.yaml's services the way a container engine would, without one.

No container engine runs where this is tested, so the image cannot be built here. This
script checks what can be checked without one:

1. compose.yaml is valid YAML with the expected services, secrets, volumes and addresses,
   and Containerfile has a non-root USER and the paths this script relies on.
2. The real binaries run as the image runs them: each service in its own mount namespace
   where /usr/local/bin holds the binaries, /var/lib/permafrost is the image's directory with
   the service's volumes mounted on it, /etc/permafrost is the shared config volume,
   /run/secrets holds the service's secrets bind-mounted as compose does (owner and mode of
   the files kept), and the root file system is read-only (read_only: true); as the
   compose.yaml's or the image's user (setpriv), with the image's ENV and WORKDIR and the
   service's command and environment; all in one network namespace whose loopback carries
   the compose network's fixed addresses.
3. The init service prepares the network; the coordinator and the three nodes start and
   connect; /v1/ready answers 200, /v1/health shows every node healthy; a DKG and a
   signature go through the CLI; a second init leaves the network as it is; every process
   stops cleanly on SIGTERM; a passphrase secret others can read is refused.

Usage: scripts/compose-smoke.py [--bin-dir DIR]
  DIR holds permafrost-node, permafrost-coordinator and permafrost (default: build them in
  debug). Needs root (namespaces, bind mounts, setpriv), util-linux, iproute2, python3-yaml.
"""

import argparse
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BINARIES = ("permafrost-node", "permafrost-coordinator", "permafrost")
NODES = ("node1", "node2", "node3")
SECRETS = {f"{n}_passphrase" for n in NODES} | {"api_token"}
INIT_DEADLINE = 60
START_DEADLINE = 60
STOP_DEADLINE = 20
CLI_DEADLINE = 120
# Host directories the namespaces mount on; created if missing, removed again if so.
MOUNTPOINTS = (
    "/etc/permafrost",
    "/var/lib/permafrost",
    "/run/secrets",
    "/usr/local/share/permafrost",
)
IN_NAMESPACE = "PERMAFROST_COMPOSE_SMOKE_NETNS"


def fail(message):
    print(f"compose-smoke: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def step(message):
    print(f"compose-smoke: {message}", flush=True)


# ---------------------------------------------------------------- the files


def image_facts():
    """What the runtime stage of Containerfile says: user, workdir, env, copied paths."""
    text = (REPO / "Containerfile").read_text()
    stages = [s for s in text.split("\nFROM ")[1:]]
    check(len(stages) >= 2, "Containerfile: a build stage and a runtime stage")
    check(
        "cargo build --release --locked" in stages[0],
        "Containerfile: the build stage runs cargo build --release --locked",
    )
    runtime = stages[-1]
    check(
        runtime.startswith(("docker.io/library/debian:12-slim", "gcr.io/distroless/cc")),
        "Containerfile: the runtime image is debian:12-slim or distroless/cc",
    )
    facts = {"env": {}, "copies": {}}
    for line in runtime.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "USER":
            facts["user"] = words[1]
        elif words[0] == "WORKDIR":
            facts["workdir"] = words[1]
        elif words[0] == "ENV":
            facts["env"].update(w.split("=", 1) for w in words[1:])
        elif words[0] == "COPY" and not words[1].startswith("--from"):
            facts["copies"][words[1]] = words[2]
        elif words[0] == "COPY":
            check(
                words[1:] == ["--from=build", "/out/", "/usr/local/bin/"],
                "Containerfile: the binaries go to /usr/local/bin",
            )
            facts["binaries"] = "/usr/local/bin"
    user = facts.get("user", "0")
    check(user.split(":")[0] not in ("0", "root"), "Containerfile: USER is not root")
    check(user == "10001:10001", "Containerfile: USER 10001:10001 (compose.yaml relies on it)")
    check(facts.get("workdir") == "/var/lib/permafrost", "Containerfile: WORKDIR /var/lib/permafrost")
    check("binaries" in facts, "Containerfile: COPY --from=build /out/ /usr/local/bin/")
    check(
        facts["copies"].get("configs/compose/init.sh")
        == "/usr/local/share/permafrost/compose-init.sh",
        "Containerfile: the compose init script at /usr/local/share/permafrost/compose-init.sh",
    )
    return facts


def compose_services():
    """compose.yaml, checked; returns (services, the network)."""
    doc = yaml.safe_load((REPO / "compose.yaml").read_text())
    check(isinstance(doc, dict), "compose.yaml is a mapping")
    services = doc.get("services", {})
    check(
        set(services) == {"init", "coordinator", *NODES},
        f"compose.yaml: services init, coordinator, node1-3 (found {sorted(services)})",
    )
    secrets = doc.get("secrets", {})
    check(set(secrets) == SECRETS, f"compose.yaml: secrets {sorted(SECRETS)} (found {sorted(secrets)})")
    for name, secret in secrets.items():
        check(secret == {"file": f"./secrets/{name}"}, f"compose.yaml: secret {name} is ./secrets/{name}")
    for node in NODES:
        check(
            services[node].get("secrets") == [{"source": f"{node}_passphrase", "target": "passphrase"}],
            f"compose.yaml: {node} gets its own passphrase as /run/secrets/passphrase, and nothing else",
        )
    check(
        services["coordinator"].get("secrets") == [{"source": "api_token", "target": "api_token"}],
        "compose.yaml: the coordinator gets the API token, and no passphrase",
    )
    check("secrets" not in services["init"], "compose.yaml: init gets no secret")
    check(services["init"].get("user") == "0:0", "compose.yaml: init runs as root (it hands the volumes over)")
    for name, service in services.items():
        check(service.get("read_only") is True, f"compose.yaml: {name} has a read-only root")
        check("ALL" in service.get("cap_drop", []), f"compose.yaml: {name} drops every capability")
        if name == "init":
            continue
        check("user" not in service, f"compose.yaml: {name} runs as the image's user")
        check(
            service.get("depends_on", {}).get("init", {}).get("condition")
            == "service_completed_successfully",
            f"compose.yaml: {name} starts after init completed",
        )
        volumes = {v.split(":")[1]: v for v in service.get("volumes", [])}
        check(
            volumes.get("/etc/permafrost") == "config:/etc/permafrost:ro",
            f"compose.yaml: {name} reads the config volume, read-only",
        )
        check(
            volumes.get("/var/lib/permafrost") == f"{name}:/var/lib/permafrost",
            f"compose.yaml: {name} has its own data volume",
        )
    check(
        "127.0.0.1:8700:8700" in services["coordinator"].get("ports", []),
        "compose.yaml: the API is published on the host's loopback only",
    )
    networks = doc.get("networks", {})
    check(set(networks) == {"permafrost"}, "compose.yaml: one network, permafrost")
    subnet = ipaddress.ip_network(networks["permafrost"]["ipam"]["config"][0]["subnet"])
    addresses = {}
    for name, service in services.items():
        address = ipaddress.ip_address(service["networks"]["permafrost"]["ipv4_address"])
        check(address in subnet, f"compose.yaml: {name}'s address is in {subnet}")
        addresses[name] = str(address)
    check(len(set(addresses.values())) == len(addresses), "compose.yaml: distinct addresses")
    env = services["init"]["environment"]
    check(
        env.get("NODES") == " ".join(f"{n}={addresses[n]}" for n in NODES)
        and env.get("COORDINATOR") == addresses["coordinator"],
        "compose.yaml: init's NODES and COORDINATOR are the services' addresses",
    )
    named = set(doc.get("volumes", {}))
    for name, service in services.items():
        for volume in service.get("volumes", []):
            check(volume.split(":")[0] in named, f"compose.yaml: {name}'s volume {volume} is declared")
    return services, subnet, addresses


# ---------------------------------------------------------------- running services


class Service:
    """One service's process, started as the engine would start its container."""

    def __init__(self, name, spec, image, tmp):
        self.name = name
        self.log = tmp / "logs" / f"{name}.log"
        user = spec.get("user", image["user"])
        env = dict(image["env"])
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env["HOME"] = image["workdir"]
        env.update({k: str(v) for k, v in (spec.get("environment") or {}).items()})
        uid, gid = user.split(":")
        image_uid, image_gid = image["user"].split(":")
        script = [
            "set -e",
            f"mount --bind {shlex.quote(str(tmp / 'image/bin'))} /usr/local/bin",
            f"mount --bind {shlex.quote(str(tmp / 'image/share'))} /usr/local/share/permafrost",
            # The image's directory: mode 0700, its user's.
            f"mount -t tmpfs -o mode=0700,uid={image_uid},gid={image_gid} image /var/lib/permafrost",
            "mount -t tmpfs -o mode=0755 secrets /run/secrets",
        ]
        for volume in sorted(spec.get("volumes", []), key=lambda v: v.split(":")[1].count("/")):
            parts = volume.split(":")
            source = shlex.quote(str(tmp / "volumes" / parts[0]))
            target = shlex.quote(parts[1])
            script += [f"mkdir -p {target}", f"mount --bind {source} {target}"]
            if parts[2:] == ["ro"]:
                script.append(f"mount -o remount,bind,ro {target}")
        for secret in spec.get("secrets", []):
            target = shlex.quote(f"/run/secrets/{secret['target']}")
            source = shlex.quote(str(tmp / "secrets" / secret["source"]))
            script += [f": > {target}", f"mount --bind {source} {target}"]
        if spec.get("read_only"):
            script.append("mount -o remount,bind,ro /")
        script.append(f"cd {shlex.quote(image['workdir'])}")
        command = ["env", "-i", *(f"{k}={v}" for k, v in env.items())]
        if uid != "0":
            command += ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs", "--"]
        command += [str(c) for c in spec["command"]]
        script.append("exec " + " ".join(shlex.quote(c) for c in command))
        self.uid = int(uid)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", "\n".join(script)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self):
        return self.log.read_text(errors="replace")

    def wait(self, deadline):
        try:
            return self.process.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            fail(f"{self.name} still running after {deadline} s\n{self.output()}")

    def running_uid(self):
        """The real uid of the running process (the pid is the binary's: every step execs)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(STOP_DEADLINE)

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def http_get(url, token=None):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, None
    except (urllib.error.URLError, OSError):
        return None, None


def run_cli(tmp, api, token, *args):
    """The image's `permafrost` CLI against the API; its JSON output."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PERMAFROST_API": api, "PERMAFROST_TOKEN": token}
    result = subprocess.run(
        [str(tmp / "image/bin/permafrost"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_DEADLINE,
    )
    check(result.returncode == 0, f"permafrost {' '.join(args)}: {result.returncode}\n{result.stdout}{result.stderr}")
    return json.loads(result.stdout)


def install_binary(source, target):
    """A hard link where the file system allows one, else a copy.

    A debug build's binaries are hundreds of megabytes each; copying them doubles what the
    step needs on a disk the test step has mostly filled already (one CI run stopped here
    with "No space left on device").
    """
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def smoke(bin_dir, services, subnet, addresses, image):
    tmp = Path(tempfile.mkdtemp(prefix="permafrost-compose-"))
    os.chmod(tmp, 0o700)
    running = []
    try:
        for d in ("image/bin", "image/share", "logs", "secrets", "volumes"):
            (tmp / d).mkdir(parents=True)
        for binary in BINARIES:
            install_binary(bin_dir / binary, tmp / "image/bin" / binary)
        shutil.copy2(REPO / "configs/compose/init.sh", tmp / "image/share/compose-init.sh")
        # Fresh named volumes: root's, mode 0755, empty.
        for name in ("config", "coordinator", *NODES):
            (tmp / "volumes" / name).mkdir(mode=0o755)
        # The secrets as docs/OPERATIONS.md says to make them: the image's user's, mode 0400.
        uid, gid = (int(x) for x in image["user"].split(":"))
        for name in sorted(SECRETS):
            path = tmp / "secrets" / name
            path.write_text(os.urandom(32).hex() + "\n")
            os.chown(path, uid, gid)
            os.chmod(path, 0o400)
        token = (tmp / "secrets/api_token").read_text().strip()

        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        for address in addresses.values():
            subprocess.run(["ip", "addr", "add", f"{address}/{subnet.prefixlen}", "dev", "lo"], check=True)

        step("init prepares the network")
        init = Service("init", services["init"], image, tmp)
        check(init.wait(INIT_DEADLINE) == 0, f"init failed\n{init.output()}")
        config = tmp / "volumes/config"
        for name in ("network.toml", "coordinator.toml", *(f"{n}.toml" for n in NODES)):
            check((config / name).is_file(), f"init wrote no {name}\n{init.output()}")
        network = (config / "network.toml").read_text()
        for name in ("coordinator", *NODES):
            data = tmp / "volumes" / name
            info = data.stat()
            check(
                (info.st_uid, info.st_gid, info.st_mode & 0o777) == (uid, gid, 0o700),
                f"{name}'s volume belongs to {uid}:{gid} with mode 0700 "
                f"(found {info.st_uid}:{info.st_gid} {info.st_mode & 0o777:o})",
            )
            key = data / "identity.key"
            check(key.stat().st_uid == uid and key.stat().st_mode & 0o777 == 0o600, f"{name}'s identity.key is its user's, 0600")
            peer = (data / "peer_id").read_text().strip()
            check(f'peer_id = "{peer}"' in network, f"network.toml lists {name} ({peer})")
            check(addresses[name] in network, f"network.toml has {name}'s address")

        step("the coordinator and three nodes start as uid %d" % uid)
        for name in ("coordinator", *NODES):
            running.append(Service(name, services[name], image, tmp))
        api = f"http://{addresses['coordinator']}:8700"
        until = time.monotonic() + START_DEADLINE
        while True:
            for service in running:
                check(service.process.poll() is None, f"{service.name} exited\n{service.output()}")
            status, _ = http_get(f"{api}/v1/ready")
            _, health = http_get(f"{api}/v1/health", token)
            healthy = [n["name"] for n in (health or {}).get("nodes", []) if n.get("healthy") and n.get("connected")]
            if status == 200 and sorted(healthy) == list(NODES):
                break
            check(
                time.monotonic() < until,
                f"not ready within {START_DEADLINE} s (ready: {status}, healthy: {healthy})\n"
                + "\n".join(f"--- {s.name}\n{s.output()}" for s in running),
            )
            time.sleep(0.5)
        for service in running:
            check(service.running_uid() == uid, f"{service.name} runs as uid {uid}")
        status, _ = http_get(f"{api}/v1/health")
        check(status == 401, f"/v1/health without the token is 401 (got {status})")
        step("ready: /v1/ready 200, every node healthy; a DKG and a signature")

        key = run_cli(tmp, api, token, "keys", "create", "--curve", "ed25519", "--threshold", "2")
        check(sorted(key["nodes"]) == list(NODES), f"the key is on every node: {key}")
        signed = run_cli(tmp, api, token, "sign", "--key", key["key_id"], "--message", "deadbeef")
        check(len(signed.get("signature", "")) == 128, f"an ed25519 signature: {signed}")
        status, ready = http_get(f"{api}/v1/ready")
        check(status == 200 and ready == {"ready": True}, f"/v1/ready with a key: {status} {ready}")

        step("a second init keeps the network")
        again = Service("init-again", services["init"], image, tmp)
        check(again.wait(INIT_DEADLINE) == 0, f"the second init failed\n{again.output()}")
        check("prepared already" in again.output(), f"the second init says so\n{again.output()}")
        check((config / "network.toml").read_text() == network, "the second init changed network.toml")

        step("SIGTERM stops every process cleanly")
        for service in reversed(running):
            code = service.stop()
            check(code == 0, f"{service.name} exited {code} on SIGTERM\n{service.output()}")
        running.clear()

        step("a passphrase secret others can read is refused")
        os.chmod(tmp / "secrets/node1_passphrase", 0o444)
        node1 = Service("node1-readable-secret", services["node1"], image, tmp)
        check(node1.wait(START_DEADLINE) == 1, f"node1 started with a readable passphrase\n{node1.output()}")
        check("accessible by group or others" in node1.output(), f"node1 says why\n{node1.output()}")
        step("passed")
    except BaseException:
        for service in running:
            print(f"--- {service.name}\n{service.output()}", file=sys.stderr)
        raise
    finally:
        for service in running:
            service.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", type=Path, help="the binaries (default: build them in debug)")
    args = parser.parse_args()

    image = image_facts()
    services, subnet, addresses = compose_services()
    if os.environ.get(IN_NAMESPACE) != "1":
        step("compose.yaml and Containerfile: as expected")
    check(os.geteuid() == 0, "needs root: namespaces, bind mounts and setpriv")
    for tool in ("unshare", "setpriv", "ip", "mount"):
        check(shutil.which(tool), f"needs {tool} (util-linux, iproute2)")

    if os.environ.get(IN_NAMESPACE) != "1":
        bin_dir = args.bin_dir
        if bin_dir is None:
            subprocess.run(
                ["cargo", "build", "--locked", "-p", "permafrost-node", "-p", "permafrost-coordinator", "-p", "permafrost-cli"],
                cwd=REPO,
                check=True,
            )
            bin_dir = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug"
        bin_dir = bin_dir.resolve()
        for binary in BINARIES:
            check((bin_dir / binary).is_file(), f"no {binary} in {bin_dir}")
        created = [p for p in MOUNTPOINTS if not os.path.isdir(p)]
        for path in created:
            os.makedirs(path)
        try:
            # Everything else in a network namespace of its own: the compose network's
            # addresses on its loopback, and no port of this host in the way.
            env = dict(os.environ, **{IN_NAMESPACE: "1"})
            code = subprocess.run(
                ["unshare", "--net", "--", sys.executable, __file__, "--bin-dir", str(bin_dir)], env=env
            ).returncode
        finally:
            for path in reversed(created):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
        sys.exit(code)
    smoke(args.bin_dir, services, subnet, addresses, image)


if __name__ == "__main__":
    main()
