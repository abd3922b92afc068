#!/bin/sh
# Write a key through NATS with the nats CLI (https://github.com/nats-io/natscli):
# a request to <prefix>.set.<subject key> (docs/PROTOCOL.md, NATS bridge), answered by one node
# of the cluster with the API's JSON for the record. The node needs
# nats { subscribe = true } (examples/config/nats-bridge.hcl or
# nats-cluster.hcl).
#
#   sh examples/scripts/nats-write.sh app/greeting hello
#   sh examples/scripts/nats-write.sh -d app/greeting          # delete
#
# NATS_URL picks the server (default nats://127.0.0.1:4222), CK_PREFIX the
# nats block's subject_prefix (default ck).
#
# The subject key: each "/" segment of the key is one token; in a token the
# bytes A-Z a-z 0-9 _ - stand for themselves and every other byte (~ too,
# and each byte of a UTF-8 character) is ~HH, uppercase hex; an empty
# segment is "~". So "app/with space" is "app.with~20space".
set -eu

op=set
if [ "${1:-}" = "-d" ]; then
	op=del
	shift
fi
want=2
[ "$op" = del ] && want=1
if [ $# -ne $want ]; then
	echo "usage: nats-write.sh KEY VALUE | nats-write.sh -d KEY" >&2
	exit 2
fi
key=$1

subject_key() {
	printf '%s' "$1" | od -An -v -tx1 | tr -s ' \t' '\n\n' | awk '
	BEGIN {
		for (i = 0; i < 256; i++)
			if ((i >= 48 && i <= 57) || (i >= 65 && i <= 90) || (i >= 97 && i <= 122) || i == 95 || i == 45)
				plain[sprintf("%02x", i)] = sprintf("%c", i)
		seg = 0
	}
	NF == 0 { next }
	$1 == "2f" { if (seg == 0) out = out "~"; out = out "."; seg = 0; next }
	{
		if ($1 in plain) out = out plain[$1]; else out = out "~" toupper($1)
		seg++
	}
	END { if (seg == 0) out = out "~"; print out }'
}

subject="${CK_PREFIX:-ck}.$op.$(subject_key "$key")"
if [ "$op" = set ]; then
	exec nats --server "${NATS_URL:-nats://127.0.0.1:4222}" req "$subject" "$2"
fi
exec nats --server "${NATS_URL:-nats://127.0.0.1:4222}" req "$subject" ""
