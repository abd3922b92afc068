package daemon

import (
	"reflect"
	"strings"
)

// reloadable are the fields Reload applies without a restart.
var reloadable = map[string]bool{"hook": true, "log_level": true, "cluster.encrypt": true, "cluster.keyring_file": true}

// restartNeeded lists the config keys that differ between old and new and
// that only take effect at the next start.
func restartNeeded(old, cur Config) []string {
	var out []string
	diff := func(prefix string, a, b reflect.Value) {
		t := a.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := strings.Split(t.Field(i).Tag.Get("hcl"), ",")[0]
			if tag == "" || strings.Contains(t.Field(i).Tag.Get("hcl"), ",block") {
				continue
			}
			name := prefix + tag
			if !reloadable[name] && !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
				out = append(out, name)
			}
		}
	}
	diff("", reflect.ValueOf(old), reflect.ValueOf(cur))
	if !reflect.DeepEqual(old.NATS, cur.NATS) {
		out = append(out, "nats")
	}
	if old.Cluster != nil && cur.Cluster != nil {
		diff("cluster.", reflect.ValueOf(*old.Cluster), reflect.ValueOf(*cur.Cluster))
	}
	return out
}
