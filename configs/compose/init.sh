#!/bin/sh
# The one-shot `init` service of compose.yaml: prepares a Permafrost network of the nodes in
# $NODES and the coordinator at $COORDINATOR, once. On a network that is already prepared
# (CONFIG_DIR/network.toml exists) it does nothing. docs/OPERATIONS.md, "Deployment".
#
# It runs as root only to hand the fresh volumes to the service user; everything else (the
# identities, the gateway keys) is created as that user.
#
#   NODES        "name=ipv4 …", e.g. "node1=172.30.7.11 node2=172.30.7.12 node3=172.30.7.13"
#   COORDINATOR  the coordinator's ipv4 address
#   NETWORK_ID   optional; default compose-<random>
#   CONFIG_DIR   default /etc/permafrost: network.toml, <node>.toml, coordinator.toml
#   DATA_ROOT    default /var/lib/permafrost: one data directory per member, <node>/ and
#                coordinator/ (each service mounts its own at /var/lib/permafrost)
#   RUN_AS       default 10001:10001, the image's user
#
# Writes node configs whose passphrase_file is /run/secrets/passphrase and a coordinator
# config whose tokens_file is /run/secrets/api_token: compose mounts each service's secrets
# there. The nodes accept the coordinator's gateway keys (created here, in the coordinator's
# data directory) for signatures and for DKGs and reshares: one host holds everything anyway.
set -eu

: "${NODES:?set NODES to \"name=ipv4 …\"}"
: "${COORDINATOR:?set COORDINATOR to the coordinator ipv4 address}"
CONFIG_DIR=${CONFIG_DIR:-/etc/permafrost}
DATA_ROOT=${DATA_ROOT:-/var/lib/permafrost}
RUN_AS=${RUN_AS:-10001:10001}
NODE_PORT=7000
COORDINATOR_PORT=7100
API_PORT=8700

if [ -e "$CONFIG_DIR/network.toml" ]; then
  echo "init: $CONFIG_DIR/network.toml exists; the network is prepared already"
  exit 0
fi

uid=${RUN_AS%:*}
gid=${RUN_AS#*:}
# Runs a command as the service user (as root: with setpriv; else as whoever we are).
as_user() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs -- "$@"
  else
    "$@"
  fi
}
# A directory of the service user, mode 0700 (a fresh volume belongs to root).
own_dir() {
  mkdir -p "$1"
  if [ "$(id -u)" -eq 0 ]; then chown "$uid:$gid" "$1"; fi
  chmod 0700 "$1"
}
# The public key in the JSON `permafrost client-key|operator-key create|show` prints.
public_key() {
  sed -n 's/.*"public_key": *"\([0-9a-f]\{64\}\)".*/\1/p'
}
# The key file $2 of kind $1 (client-key, operator-key): created if missing; prints its public key.
key_file() {
  if [ -e "$2" ]; then verb=show; else verb=create; fi
  key=$(as_user permafrost "$1" "$verb" --file "$2" | public_key)
  [ -n "$key" ] || { echo "init: no public key for $2" >&2; exit 1; }
  echo "$key"
}

mkdir -p "$CONFIG_DIR"
coordinator_dir=$DATA_ROOT/coordinator
own_dir "$coordinator_dir"
if [ ! -e "$coordinator_dir/peer_id" ]; then
  # The coordinator keeps no peer_id file of its own; this one is for the next init.
  peer=$(as_user permafrost-coordinator init --dir "$coordinator_dir")
  printf '%s\n' "$peer" | as_user tee "$coordinator_dir/peer_id" >/dev/null
fi
coordinator_peer=$(cat "$coordinator_dir/peer_id")
gateway=$(key_file client-key "$coordinator_dir/gateway.key")
operator=$(key_file operator-key "$coordinator_dir/operator.key")

# Written beside its final name, renamed last (the root filesystem may be read-only).
network=$CONFIG_DIR/network.toml.tmp
echo "network_id = \"${NETWORK_ID:-compose-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')}\"" >"$network"
for entry in $NODES; do
  name=${entry%%=*}
  ip=${entry#*=}
  dir=$DATA_ROOT/$name
  own_dir "$dir"
  if [ ! -e "$dir/peer_id" ]; then
    as_user permafrost-node init --dir "$dir" >/dev/null
  fi
  peer=$(cat "$dir/peer_id")
  printf '\n[[nodes]]\nname = "%s"\npeer_id = "%s"\naddr = "/ip4/%s/tcp/%s"\n' \
    "$name" "$peer" "$ip" "$NODE_PORT" >>"$network"
  cat >"$CONFIG_DIR/$name.toml" <<TOML
# $name, written by compose's init (configs/compose/init.sh).
data_dir = "/var/lib/permafrost"
listen = "/ip4/$ip/tcp/$NODE_PORT"
network_file = "network.toml"
passphrase_file = "/run/secrets/passphrase"

[clients]
all_keys = ["$gateway"]

[operators]
all_keys = ["$operator"]
TOML
  echo "init: $name $peer"
done
printf '\n[[coordinators]]\npeer_id = "%s"\naddr = "/ip4/%s/tcp/%s"\n' \
  "$coordinator_peer" "$COORDINATOR" "$COORDINATOR_PORT" >>"$network"
cat >"$CONFIG_DIR/coordinator.toml" <<TOML
# The coordinator, written by compose's init (configs/compose/init.sh).
data_dir = "/var/lib/permafrost"
listen = "/ip4/$COORDINATOR/tcp/$COORDINATOR_PORT"
api_listen = "0.0.0.0:$API_PORT"
network_file = "network.toml"
tokens_file = "/run/secrets/api_token"
gateway_client_key_file = "/var/lib/permafrost/gateway.key"
gateway_operator_key_file = "/var/lib/permafrost/operator.key"
TOML
echo "init: coordinator $coordinator_peer"
chmod 0644 "$CONFIG_DIR"/*.toml "$network"
# Last, so that a failed init runs again.
mv "$network" "$CONFIG_DIR/network.toml"
echo "init: wrote $CONFIG_DIR/network.toml"
