package packaging

// The Debian package, built as README.md's "Install as a service" says and
// inspected as an operator would: its files, control data, maintainer
// scripts and unit (systemd-analyze verify where systemd is installed),
// and its config consistent with the unit.

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/daemon"
)

// exitNoPackager is build-deb.sh's status when nFPM cannot be fetched.
const exitNoPackager = 69

// readmeBlock returns the first sh code block after heading in README.md.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no heading %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "\n```sh\n")
	if !ok {
		t.Fatalf("README.md: no sh block under %q", heading)
	}
	block, _, ok := strings.Cut(rest, "\n```\n")
	if !ok {
		t.Fatalf("README.md: the sh block under %q does not end", heading)
	}
	return block + "\n"
}

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func TestDebianPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and the package; skipped with -short")
	}
	// README's commands, verbatim, from a directory of their own: its
	// packaging/ is the repository's (build-deb.sh builds the repository
	// it is in, into dist/ under the current directory).
	work := t.TempDir()
	repoPackaging, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(repoPackaging, filepath.Join(work, "packaging")); err != nil {
		t.Fatal(err)
	}
	block := readmeBlock(t, "## Install as a service")
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", block)
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == exitNoPackager {
		t.Skipf("the packager cannot be fetched here, so no package was built:\n%s", out)
	}
	if err != nil {
		t.Fatalf("README's commands:\n%s\nfailed: %v\n%s", block, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(work, "dist", "ckd_*_"+runtime.GOARCH+".deb"))
	if len(debs) != 1 {
		t.Fatalf("dist/ holds %v, want one ckd_*_%s.deb\n%s", debs, runtime.GOARCH, out)
	}
	deb := debs[0]
	t.Logf("built %s", filepath.Base(deb))

	root := filepath.Join(work, "root")
	run(t, work, "dpkg-deb", "-x", deb, root)
	completion := exec.Command(filepath.Join(root, "usr/bin/ckctl"), "completion", "bash").Run() == nil

	t.Run("files", func(t *testing.T) {
		list := run(t, work, "dpkg-deb", "-c", deb)
		want := map[string]string{ // path: mode
			"./usr/bin/ckd":                          "-rwxr-xr-x",
			"./usr/bin/ckctl":                        "-rwxr-xr-x",
			"./usr/lib/systemd/system/ckd.service":   "-rw-r--r--",
			"./etc/ckd/config.hcl":                   "-rw-r--r--",
			"./usr/share/doc/ckd/copyright":          "-rw-r--r--",
			"./usr/share/doc/ckd/LICENSE":            "-rw-r--r--",
			"./usr/share/doc/ckd/README.md":          "-rw-r--r--",
			"./usr/share/doc/ckd/config.hcl.example": "-rw-r--r--",
		}
		const bash = "./usr/share/bash-completion/completions/ckctl"
		if completion {
			want[bash] = "-rw-r--r--"
			run(t, work, "bash", "-n", filepath.Join(root, bash)) // it parses
		} else if strings.Contains(list, bash) {
			t.Errorf("a bash completion is packaged, but ckctl has no 'completion bash'")
		} else {
			t.Logf("ckctl has no 'completion bash' yet: none packaged (build-deb.sh says so)")
		}
		for path, mode := range want {
			found := false
			for _, line := range strings.Split(list, "\n") {
				f := strings.Fields(line)
				if len(f) >= 6 && f[len(f)-1] == path {
					found = true
					if f[0] != mode || f[1] != "root/root" {
						t.Errorf("%s: %s %s, want %s root/root", path, f[0], f[1], mode)
					}
				}
			}
			if !found {
				t.Errorf("the package lacks %s:\n%s", path, list)
			}
		}
		// The binaries are the static ones and run.
		for _, bin := range []string{"ckd -version", "ckctl --version"} {
			f := strings.Fields(bin)
			if v := run(t, work, filepath.Join(root, "usr/bin", f[0]), f[1]); !strings.HasPrefix(v, f[0]+" ") {
				t.Errorf("%s says %q", bin, v)
			}
		}
	})

	t.Run("control", func(t *testing.T) {
		info := run(t, work, "dpkg-deb", "-I", deb)
		for _, want := range []string{"Package: ckd", "Architecture: " + runtime.GOARCH,
			"Depends: adduser, init-system-helpers", "conffiles", "postinst", "prerm", "postrm"} {
			if !strings.Contains(info, want) {
				t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
			}
		}
		ctl := filepath.Join(work, "control")
		run(t, work, "dpkg-deb", "-e", deb, ctl)
		if b, _ := os.ReadFile(filepath.Join(ctl, "conffiles")); string(b) != "/etc/ckd/config.hcl\n" {
			t.Errorf("conffiles = %q, want /etc/ckd/config.hcl", b)
		}
		scripts := map[string][]string{
			"postinst": {"adduser --system --group --home /var/lib/ckd --no-create-home ckd",
				"/usr/bin/ckctl keygen >/etc/ckd/keys.new", "chown ckd:ckd /etc/ckd/keys.new",
				"deb-systemd-helper enable ckd.service", "deb-systemd-invoke start ckd.service"},
			"prerm":  {"deb-systemd-invoke stop ckd.service"},
			"postrm": {"purge)", "rm -f /etc/ckd/keys", "rm -rf /var/lib/ckd", "deb-systemd-helper purge ckd.service"},
		}
		for name, wants := range scripts {
			p := filepath.Join(ctl, name)
			fi, err := os.Stat(p)
			if err != nil || fi.Mode().Perm()&0o111 == 0 {
				t.Errorf("%s: %v, mode %v: want an executable script", name, err, fi.Mode())
				continue
			}
			b, _ := os.ReadFile(p)
			for _, want := range wants {
				if !strings.Contains(string(b), want) {
					t.Errorf("%s lacks %q", name, want)
				}
			}
			run(t, work, "sh", "-n", p) // it parses
		}
		// postrm removes nothing of the user's on remove.
		b, _ := os.ReadFile(filepath.Join(ctl, "postrm"))
		if _, removeCase, _ := strings.Cut(string(b), "remove)"); !strings.Contains(removeCase, ";;") ||
			strings.Contains(strings.SplitN(removeCase, ";;", 2)[0], "rm ") {
			t.Errorf("postrm's remove case deletes files:\n%s", b)
		}
	})

	unitPath := filepath.Join(root, "usr/lib/systemd/system/ckd.service")
	unit := parseUnit(t, unitPath)
	t.Run("unit", func(t *testing.T) {
		for key, want := range map[string]string{
			"Type":                   "notify",
			"ExecStart":              "/usr/bin/ckd -config /etc/ckd/config.hcl",
			"User":                   "ckd",
			"Group":                  "ckd",
			"StateDirectory":         "ckd",
			"RuntimeDirectory":       "ckd",
			"RuntimeDirectoryMode":   "0750",
			"ConfigurationDirectory": "ckd",
			"NoNewPrivileges":        "yes",
			"ProtectSystem":          "strict",
			"ProtectHome":            "yes",
			"PrivateTmp":             "yes",
			"CapabilityBoundingSet":  "",
			"WantedBy":               "multi-user.target",
		} {
			if got, ok := unit[key]; !ok || got != want {
				t.Errorf("%s=%q (set: %v), want %q", key, got, ok, want)
			}
		}
		families := strings.Fields(unit["RestrictAddressFamilies"])
		for _, f := range []string{"AF_UNIX", "AF_INET", "AF_NETLINK"} {
			if !strings.Contains(" "+strings.Join(families, " ")+" ", " "+f+" ") {
				t.Errorf("RestrictAddressFamilies=%v lacks %s", families, f)
			}
		}
		sa, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Logf("systemd-analyze is not installed: the unit is not verified")
			return
		}
		// verify checks that the commands exist: point them at the
		// package's binaries; the rest is the unit as packaged.
		src, _ := os.ReadFile(unitPath)
		dir := filepath.Join(work, "verify")
		os.MkdirAll(dir, 0o755)
		copyPath := filepath.Join(dir, "ckd.service")
		os.WriteFile(copyPath, bytes.ReplaceAll(src, []byte("/usr/bin/"), []byte(filepath.Join(root, "usr/bin")+"/")), 0o644)
		v := exec.Command(sa, "verify", copyPath)
		out, err := v.CombinedOutput()
		// verify warns of a bad value and goes on: any output is a fault.
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("config", func(t *testing.T) {
		cfg, err := daemon.LoadConfig(filepath.Join(root, "etc/ckd/config.hcl"))
		if err != nil {
			t.Fatal(err)
		}
		// The unit makes the directories the config names, for its user.
		for _, c := range []struct{ field, got, want string }{
			{"data_dir", cfg.DataDir, "/var/lib/" + unit["StateDirectory"]},
			{"socket", filepath.Dir(cfg.Socket), "/run/" + unit["RuntimeDirectory"]},
			{"socket_group", cfg.SocketGroup, unit["Group"]},
			{"cluster.keyring_file", filepath.Dir(cfg.Cluster.KeyringFile), "/etc/" + unit["ConfigurationDirectory"]},
			{"ExecReload's socket", unit["ExecReload"], "/usr/bin/ckctl --socket " + cfg.Socket + " reload"},
		} {
			if c.got != c.want {
				t.Errorf("%s: %q, want %q", c.field, c.got, c.want)
			}
		}
		// The rest validates as ckd would at start, with a key as
		// postinst makes it, without the group ckd (which only exists
		// where the package is installed).
		key := filepath.Join(work, "keys")
		if err := os.WriteFile(key, []byte(run(t, work, filepath.Join(root, "usr/bin/ckctl"), "keygen")), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.Cluster.KeyringFile, cfg.SocketGroup = key, ""
		if err := cfg.Validate(); err != nil {
			t.Errorf("the packaged config: %v", err)
		}
	})
}

// parseUnit reads a unit file's Key=Value lines (the last of a key wins,
// as systemd's do for these keys).
func parseUnit(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not Key=Value", path, line)
		}
		out[k] = v
	}
	return out
}
