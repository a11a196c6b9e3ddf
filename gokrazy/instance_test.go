package gokrazy

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/qapi-az/qapi/images/gpt"
)

func TestRootOptionRoundTrip(t *testing.T) {
	boot := gpt.Derive("boot")
	for _, part := range []int{SlotAPartition, SlotBPartition} {
		line := "console=ttyS0 " + RootOption(boot, part) + " quiet"
		gotBoot, gotPart, err := ParseRoot(line)
		if err != nil || gotBoot != boot || gotPart != part {
			t.Errorf("ParseRoot(%q) = %v, %d, %v; want %v, %d", line, gotBoot, gotPart, err,
				boot, part)
		}
	}
	for _, bad := range []string{
		"console=ttyS0",
		"root=/dev/vda2",
		"root=PARTUUID=" + boot.String() + "/PARTNROFF=3",
	} {
		if _, _, err := ParseRoot(bad); err == nil {
			t.Errorf("ParseRoot(%q) accepted it", bad)
		}
	}
}

func TestBlessed(t *testing.T) {
	for _, tt := range []struct {
		name string
		part int
		want string
		ok   bool
	}{
		{"qapi-a+3.conf", SlotAPartition, "qapi-a.conf", true},
		{"qapi-a+2-1.conf", SlotAPartition, "qapi-a.conf", true},
		{"qapi-a+0-3.conf", SlotAPartition, "qapi-a.conf", true},
		{"qapi-b+2-1.conf", SlotAPartition, "", false},
		{"qapi-b+2-1.conf", SlotBPartition, "qapi-b.conf", true},
		{"qapi-a.conf", SlotAPartition, "", false},
		{"other+1.conf", SlotAPartition, "", false},
	} {
		got, ok := Blessed(tt.name, tt.part)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Blessed(%q, %d) = %q, %v; want %q, %v", tt.name, tt.part, got, ok,
				tt.want, tt.ok)
		}
	}
	if got := EntryName(SlotBPartition, 3); got != "qapi-b+3-0.conf" {
		t.Errorf("EntryName(3, 3) = %q", got)
	}
}

func TestInstanceRoundTrip(t *testing.T) {
	in := Default(false)
	b, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "instance.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Errorf("Load = %+v, want %+v", got, in)
	}

	in.Programs = append(in.Programs, in.Programs[0])
	if _, err := in.Marshal(); err == nil {
		t.Error("Marshal accepted two programs of one name")
	}
}

// TestDefaultMonitorConfined checks that the image runs the monitoring
// station confined, denied the server's folder, configuration and keys
// (clause 2.7), and reachable through the firewall on the internal side.
func TestDefaultMonitorConfined(t *testing.T) {
	in := Default(false)
	p, ok := in.Program("qapi-monitor")
	if !ok || p.Package != MonitorPackage {
		t.Fatalf("the default instance runs no monitoring station: %+v", in.Programs)
	}
	args := strings.Join(p.Args, " ")
	for _, flag := range []string{"-confine=false", "-uid 0", "-gid 0"} {
		if strings.Contains(args, flag) {
			t.Errorf("qapi-monitor runs with %s: it must confine itself", flag)
		}
	}
	want := []string{"-state " + MonitorDir, "-socket " + MonitorSocket,
		fmt.Sprintf("-listen :%d", MonitorPort), "-deny "}
	for _, w := range want {
		if !strings.Contains(args, w) {
			t.Errorf("qapi-monitor args %q lack %q", args, w)
		}
	}
	for _, d := range []string{ServerConfigPath, SealedDir} {
		if !slices.Contains(MonitorDenied, d) || !strings.Contains(args, d) {
			t.Errorf("the monitoring station is not denied %s", d)
		}
	}
	if !strings.HasPrefix(MonitorSocket, MonitorDir+"/") {
		t.Errorf("the monitor's socket %s lies outside its state folder %s", MonitorSocket,
			MonitorDir)
	}
	if !slices.Contains(in.Network.Firewall.ClientPorts, MonitorPort) {
		t.Errorf("the firewall does not open the monitor's port %d inside", MonitorPort)
	}
}
