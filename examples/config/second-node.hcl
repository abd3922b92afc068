# A second node on the same host, beside a first one on the defaults.
# Each node needs its own data dir and socket; on lo they find each other
# by multicast with no configuration, and share the key file
# ckd made for this user at the first start (~/.config/ckd/cluster.key, or
# /etc/ckd/cluster.key as root): another user's nodes cannot join. /tmp is
# sticky, so the socket stays this user's once made; ckctl talks to it only
# if its own user or root serves it.
#   ckd -config examples/config/second-node.hcl
# or, with no file at all:
#   ckd -node-name beta -data-dir /tmp/ckd-beta -socket /tmp/ckd-beta.sock

node_name = "beta"
data_dir  = "/tmp/ckd-beta"
socket    = "/tmp/ckd-beta.sock"
