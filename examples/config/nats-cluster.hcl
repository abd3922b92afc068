# A cluster whose own traffic (HELLO, replication, fresh reads, sync)
# goes over NATS instead of UDP: every node that reaches the NATS system
# below is a member, whatever network it is on. One file for every node;
# give each its own name (and, on one host, its own data dir and socket):
#
#   ckctl keygen > /etc/ckd/cluster.key; chmod 600 /etc/ckd/cluster.key
#     (once; copy the same file to every node)
#   ckd -config examples/config/nats-cluster.hcl -node-name alpha
#   ckd -config examples/config/nats-cluster.hcl -node-name beta  -data-dir /tmp/ckd-beta  -socket /tmp/ckd-beta.sock
#   ckd -config examples/config/nats-cluster.hcl -node-name gamma -data-dir /tmp/ckd-gamma -socket /tmp/ckd-gamma.sock
#
# A node speaks one transport: nodes on "nats" and nodes on multicast,
# broadcast or peers are separate clusters, even under the same name.
# Write through NATS: sh examples/scripts/nats-write.sh app/greeting hello

cluster {
  name         = "example"
  transport    = "nats"                  # subjects ck.cluster.example.>
  keyring_file = "/etc/ckd/cluster.key"  # a key is required on nats (or insecure = true)
}

# Required with transport = "nats": the servers, credentials and TLS the
# cluster connects with (its own connection, beside the bridge's).
nats {
  url       = "nats://127.0.0.1:4222"   # several: comma-separated; off loopback, tls:// or a tls block
  publish   = "local"                   # the bridge: each change once on ck.kv.<key> ("off": none)
  subscribe = true                      # take writes from ck.set.<key> / ck.del.<key>
}
