# /etc/ckd/config.hcl: the ckd service's configuration (ckd.service runs
# ckd -config /etc/ckd/config.hcl). Every key, its default and why:
# /usr/share/doc/ckd/config.hcl.example. After a change,
# `systemctl reload ckd` re-reads hooks, the keyring and the log level;
# other keys need `systemctl restart ckd` (ckd logs which).

# The service runs as the user ckd, whose own defaults would be under its
# home; these are the system's places, which the unit makes and gives to
# ckd (StateDirectory=ckd, RuntimeDirectory=ckd).
data_dir = "/var/lib/ckd"
socket   = "/run/ckd/ckd.sock"

# Members of the group ckd may use ckctl (adduser USER ckd); root may too.
socket_group = "ckd"

cluster {
  # The cluster key, made at install (ckctl keygen), private to ckd (owner
  # ckd, mode 0600). Nodes with the same key form one cluster: copy this
  # file to every node (then set interface, and transport if need be; see
  # config.hcl.example).
  keyring_file = "/etc/ckd/keys"
}
