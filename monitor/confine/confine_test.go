package confine

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qapi-az/qapi/internal/testenv"
)

// The child half of TestApplyDeniesOutsideState: confine, then report.
func TestMain(m *testing.M) {
	if os.Getenv("CONFINE_CHILD_STATE") != "" {
		err := Apply(Options{UID: 65534, GID: 65534, StateDir: os.Getenv("CONFINE_CHILD_STATE"),
			ReadOnly: []string{"/proc"}})
		if err != nil {
			os.Stdout.WriteString("apply: " + err.Error() + "\n")
			os.Exit(3)
		}
		if err := Verify(strings.Split(os.Getenv("CONFINE_CHILD_DENY"), ",")); err != nil {
			os.Stdout.WriteString("verify: " + err.Error() + "\n")
			os.Exit(4)
		}
		if _, err := os.ReadFile("/proc/self/status"); err != nil {
			os.Stdout.WriteString("proc: " + err.Error() + "\n")
			os.Exit(5)
		}
		f := filepath.Join(os.Getenv("CONFINE_CHILD_STATE"), "written")
		if err := os.WriteFile(f, []byte("ok"), 0o600); err != nil {
			os.Stdout.WriteString("state: " + err.Error() + "\n")
			os.Exit(6)
		}
		os.Stdout.WriteString("confined\n")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestApplyDeniesOutsideState(t *testing.T) {
	testenv.NeedRoot(t)
	// A directory every user may traverse, so that only Landlock decides.
	root, err := os.MkdirTemp("", "confine")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	state := filepath.Join(root, "state")
	secret := filepath.Join(root, "keys")
	for _, d := range []string{state, secret} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// World-readable on purpose: Landlock, not file modes, must stop it.
	open := filepath.Join(secret, "readable.pem")
	if err := os.WriteFile(open, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}

	run := func(deny ...string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "CONFINE_CHILD_STATE="+state,
			"CONFINE_CHILD_DENY="+strings.Join(deny, ","))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(open, secret, "/etc/hostname")
	if err != nil || !strings.Contains(out, "confined") {
		t.Fatalf("confined child: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(state, "written")); err != nil || string(b) != "ok" {
		t.Fatalf("the state directory was not writable from inside: %v", err)
	}

	// Verify must catch a path the confinement leaves open.
	out, err = run(filepath.Join(state, "written"))
	if err == nil || !strings.Contains(out, "can still read") {
		t.Fatalf("Verify passed a readable path: %v\n%s", err, out)
	}
}

func TestApplyRefusesWithoutRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as root; the refusal is for other users")
	}
	if err := Apply(Options{UID: 1, GID: 1, StateDir: t.TempDir()}); err != ErrNotRoot {
		t.Fatalf("Apply = %v, want ErrNotRoot", err)
	}
}
