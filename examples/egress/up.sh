#!/usr/bin/env bash
# Brings up the egress example: the mesh (`weft up`) in one network
# namespace, the partner (an HTTPS server of openssl's) in another, one
# veth pair between them. The partner's firewall lets in only the egress
# gateway's address (10.254.9.9); a DNS server (dnsmasq) in the mesh's
# namespace knows the partner's names. Needs root, ip, iptables, openssl
# and dnsmasq. Ctrl-C (or SIGTERM) stops everything and removes the
# namespaces.
#
#   WEFT    the weft binary (default: weft on PATH)
#   PREFIX  the namespaces are $PREFIX-mesh and $PREFIX-partner (default: weft)
#   WORK    where the manifests, certificates and CA state go (default: a
#           new temporary folder)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
WEFT="${WEFT:-weft}"
PREFIX="${PREFIX:-weft}"
WORK="${WORK:-$(mktemp -d)}"
mesh="$PREFIX-mesh" partner="$PREFIX-partner"

cleanup() {
  trap - EXIT INT TERM
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  ip netns del "$mesh" 2>/dev/null || true
  ip netns del "$partner" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for ns in "$mesh" "$partner"; do
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip -n "$mesh" link add eg-mesh type veth peer name eg-partner netns "$partner"
ip -n "$mesh" addr add 10.254.9.1/30 dev eg-mesh
ip -n "$mesh" addr add 10.254.9.9/32 dev eg-mesh
ip -n "$partner" addr add 10.254.9.2/30 dev eg-partner
ip -n "$mesh" link set eg-mesh up
ip -n "$partner" link set eg-partner up
ip -n "$partner" route add 10.254.9.9/32 via 10.254.9.1
# Only the egress gateway's address gets in.
ip netns exec "$partner" iptables -A INPUT -p tcp -s 10.254.9.9 -j ACCEPT
ip netns exec "$partner" iptables -A INPUT -p tcp -j REJECT --reject-with tcp-reset

# The partner's CA, and its server's certificate for both its names.
p="$WORK/partner"
mkdir -p "$p" "$WORK/mesh"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -days 30 -subj /CN=partner-ca \
  -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
openssl req "${ec[@]}" -subj /CN=api.partner.test \
  -keyout "$p/server.key" -out "$p/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:api.partner.test,DNS:secure.partner.test\n' > "$p/san.ext"
openssl x509 -req -in "$p/server.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" \
  -CAcreateserial -days 30 -extfile "$p/san.ext" -out "$p/server.crt" 2>/dev/null
printf 'hello from the partner\n' > "$p/hello.txt"
# It serves the files of its folder (GET /hello.txt).
(cd "$p" && exec ip netns exec "$partner" openssl s_server -quiet -WWW \
  -accept 10.254.9.2:443 -cert server.crt -key server.key) &

# The mesh's manifests, and the partner's CA as the ConfigMap the
# XBackend's validation names.
cp "$here"/*.yaml "$WORK/mesh/"
{
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: partner-ca, namespace: weft-system}\ndata:\n  ca.crt: |\n'
  sed 's/^/    /' "$p/ca.crt"
} > "$WORK/mesh/partner-ca.yaml"

# The partner's names, for the egress gateway to resolve.
ip netns exec "$mesh" dnsmasq --keep-in-foreground --no-resolv --no-hosts \
  --user=root --pid-file= --bind-interfaces --listen-address=127.0.0.1 \
  --port=5353 --local=/partner.test/ --local-ttl=30 \
  --address=/api.partner.test/10.254.9.2 --address=/secure.partner.test/10.254.9.2 &

ip netns exec "$mesh" "$WEFT" up "$WORK/mesh" --state "$WORK/state" \
  --dns 127.0.0.1:5353 --outbound-traffic-policy RegistryOnly &
echo "mesh: ip netns exec $mesh ...   partner CA: $p/ca.crt   (Ctrl-C stops it all)"
wait -n
