# A node that publishes every change it originates on NATS, and takes
# writes from NATS (ck.set.<key> / ck.del.<key>, through the same path as
# ckctl, on_set hooks included).
#   ckd -config examples/config/nats-bridge.hcl
# Follow the changes:  go run ./examples/nats/subscriber   (or: nats sub 'ck.kv.>')
# Write through NATS:  nats req ck.set.app.greeting hello

node_name = "alpha"

nats {
  url       = "nats://127.0.0.1:4222"
  publish   = "local"   # each change once per cluster: by the node it was written on
  subscribe = true      # one node of the cluster applies each write (queue group)
}
