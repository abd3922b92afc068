# A single ckd with its files in explicit places, for a server.
#   ckd -config examples/config/single-node.hcl
# Everything not set here keeps its default (see config.hcl.example).

node_name = "alpha"
data_dir  = "/var/lib/ckd"
socket    = "/run/ckd/ckd.sock"

# To let the members of a group use ckctl, name it (e.g. "ckd"; it must
# exist): the socket and its directory get that group.
socket_mode  = "0660"
socket_group = ""

log_level = "info"

# Refuse values over 1 MiB: a config store has no use for more.
max_value_size = "1MiB"

cluster {
  # Nodes only join a cluster of the same name: pick one per environment.
  name = "prod-config"
}
