#!/usr/bin/env bash
# Brings up the two clusters of this example, each a `weft up` in a
# network namespace of its own, joined by one veth pair (10.254.0.1 in
# east, 10.254.0.2 in west) and nothing else: east reaches west only
# through west's east-west gateway and peering port. Needs root and `ip`.
# Ctrl-C (or SIGTERM) stops both and removes the namespaces.
#
#   WEFT    the weft binary (default: weft on PATH)
#   PREFIX  the namespaces are $PREFIX-east and $PREFIX-west (default: weft)
#   WORK    where the clusters' folders and CA state go (default: a new
#           temporary folder)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
WEFT="${WEFT:-weft}"
PREFIX="${PREFIX:-weft}"
WORK="${WORK:-$(mktemp -d)}"
east="$PREFIX-east" west="$PREFIX-west"

cleanup() {
  trap - EXIT INT TERM
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  ip netns del "$east" 2>/dev/null || true
  ip netns del "$west" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for ns in "$east" "$west"; do
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip -n "$east" link add mc-east type veth peer name mc-west netns "$west"
ip -n "$east" addr add 10.254.0.1/30 dev mc-east
ip -n "$west" addr add 10.254.0.2/30 dev mc-west
ip -n "$east" link set mc-east up
ip -n "$west" link set mc-west up

# One root for both clusters, each its own intermediate (the root's key
# is not kept).
"$WEFT" cacerts --out "$WORK/ca" east west
for c in east west; do
  mkdir -p "$WORK/$c"
  cp "$here/$c"/*.yaml "$WORK/$c/"
  cp "$WORK/ca/$c/cacerts.yaml" "$WORK/$c/"
done

ip netns exec "$east" "$WEFT" up "$WORK/east" --state "$WORK/east-state" \
  --cluster east --network net-east --peering 10.254.0.1:15012 &
ip netns exec "$west" "$WEFT" up "$WORK/west" --state "$WORK/west-state" \
  --cluster west --network net-west --peering 10.254.0.2:15012 &
echo "east: ip netns exec $east ...   west: ip netns exec $west ...   (Ctrl-C stops both)"
wait -n
