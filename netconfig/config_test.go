package netconfig

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validConfig passes Validate; each case of TestValidate breaks one thing.
func validConfig() Config {
	return Config{
		Internal: Interface{
			Name:      "enp2s0",
			Addresses: []string{"198.51.100.1/24", "2001:db8:1::1/64"},
			Routes:    []Route{{Destination: "203.0.113.0/24", Via: "198.51.100.254"}},
			DNS:       []string{"198.51.100.53"},
		},
		External: Interface{
			MAC:       "52:54:00:12:34:56",
			Addresses: []string{"192.0.2.10/24"},
			Gateway:   "192.0.2.1",
			MTU:       1500,
		},
		Firewall: Firewall{TLSPort: 5500, ClientPorts: []uint16{80, 443}, ConsolePort: 4000},
	}
}

func TestValidate(t *testing.T) {
	if err := Validate(validConfig()); err != nil {
		t.Fatalf("Validate(validConfig()) = %v", err)
	}

	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"bad CIDR", func(c *Config) {
			c.External.Addresses = append(c.External.Addresses, "10.0.0.300/24")
		}, `external.addresses[1]: "10.0.0.300/24" is not a CIDR`},
		{"address without prefix", func(c *Config) { c.Internal.Addresses[0] = "198.51.100.1" },
			`internal.addresses[0]: "198.51.100.1" is not a CIDR`},
		{"network address", func(c *Config) { c.External.Addresses[0] = "192.0.2.0/24" },
			`external.addresses[0]: "192.0.2.0/24" is the network's own address`},
		{"multicast address", func(c *Config) { c.External.Addresses[0] = "224.0.0.1/4" },
			`external.addresses[0]: "224.0.0.1/4" is not a unicast address`},
		{"repeated address", func(c *Config) {
			c.Internal.Addresses = append(c.Internal.Addresses, "198.51.100.1/25")
		}, "internal.addresses[2]: 198.51.100.1 repeats addresses[0]"},
		{"address on both roles", func(c *Config) {
			c.External.Addresses[0] = "198.51.100.1/24"
			c.External.Gateway = ""
		}, "external.addresses[0]: 198.51.100.1 is also an internal address"},
		{"same name for both roles", func(c *Config) {
			c.External.MAC, c.External.Name = "", "enp2s0"
		}, `external.name: "enp2s0" is also the internal interface`},
		{"same MAC for both roles", func(c *Config) {
			c.Internal.Name, c.Internal.MAC = "", "52:54:00:12:34:56"
		}, `external.mac: "52:54:00:12:34:56" is also the internal interface`},
		{"name and MAC", func(c *Config) { c.External.Name = "eth0" },
			"external.mac: give the interface's name or its mac, not both"},
		{"neither name nor MAC", func(c *Config) { c.Internal.Name = "" },
			"internal.name: give the interface's name or its mac"},
		{"long name", func(c *Config) { c.Internal.Name = "averyverylongname" },
			`internal.name: "averyverylongname" is longer than 15 bytes`},
		{"bad MAC", func(c *Config) { c.External.MAC = "52:54:00" },
			`external.mac: "52:54:00" is not a MAC address`},
		{"gateway off subnet", func(c *Config) { c.External.Gateway = "10.1.1.1" },
			"external.gateway: 10.1.1.1 is outside every address's subnet"},
		{"gateway is own address", func(c *Config) { c.External.Gateway = "192.0.2.10" },
			"external.gateway: 192.0.2.10 is the interface's own address"},
		{"gateway not an IP", func(c *Config) { c.External.Gateway = "router" },
			`external.gateway: "router" is not an IP address`},
		{"DHCP on external", func(c *Config) {
			c.External.DHCP, c.External.Addresses, c.External.Gateway = true, nil, ""
		}, "external.dhcp: the external interface needs static addresses"},
		{"DHCP with addresses", func(c *Config) { c.Internal.DHCP = true },
			"internal.addresses: DHCP assigns the addresses"},
		{"no addresses", func(c *Config) { c.External.Addresses, c.External.Gateway = nil, "" },
			"external.addresses: give at least one address"},
		{"MTU too small", func(c *Config) { c.External.MTU = 576 },
			"external.mtu: 576 is outside 1280-9216"},
		{"MTU too large", func(c *Config) { c.Internal.MTU = 65536 },
			"internal.mtu: 65536 is outside 1280-9216"},
		{"VLAN 4095", func(c *Config) { c.External.VLAN = 4095 },
			"external.vlan: 4095 is outside 1-4094"},
		{"VLAN negative", func(c *Config) { c.Internal.VLAN = -1 },
			"internal.vlan: -1 is outside 1-4094"},
		{"route not a CIDR", func(c *Config) { c.Internal.Routes[0].Destination = "203.0.113.0" },
			`internal.routes[0].destination: "203.0.113.0" is not a CIDR`},
		{"route with host bits", func(c *Config) {
			c.Internal.Routes[0].Destination = "203.0.113.7/24"
		}, `internal.routes[0].destination: "203.0.113.7/24" has host bits set`},
		{"route via off subnet", func(c *Config) { c.Internal.Routes[0].Via = "192.0.2.1" },
			"internal.routes[0].via: 192.0.2.1 is outside every address's subnet"},
		{"route via other family", func(c *Config) { c.Internal.Routes[0].Via = "2001:db8:1::2" },
			"internal.routes[0].via: 2001:db8:1::2 and destination 203.0.113.0/24 are of " +
				"different IP versions"},
		{"DNS not an IP", func(c *Config) { c.Internal.DNS = []string{"ns1.example"} },
			`internal.dns[0]: "ns1.example" is not an IP address`},
		{"no TLS port", func(c *Config) { c.Firewall.TLSPort = 0 },
			"firewall.tlsPort: give the security-server TLS port"},
		{"no console port", func(c *Config) { c.Firewall.ConsolePort = 0 },
			"firewall.consolePort: give the console port"},
		{"no client port", func(c *Config) { c.Firewall.ClientPorts = nil },
			"firewall.clientPorts: give at least one client proxy port"},
		{"port 0", func(c *Config) { c.Firewall.ClientPorts[1] = 0 },
			"firewall.clientPorts[1]: port 0 is not a port"},
		{"port twice", func(c *Config) { c.Firewall.AdapterPort = 443 },
			"firewall.adapterPort: port 443 is also firewall.clientPorts[1]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			tc.mutate(&cfg)
			err := Validate(cfg)
			if err == nil {
				t.Fatalf("Validate accepted the configuration, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %q, want it to contain %q", err, tc.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("Validate error %v holds no *FieldError", err)
			}
		})
	}
}

func TestValidateAcceptsDHCPAndLinkLocalGateway(t *testing.T) {
	cfg := validConfig()
	cfg.Internal.DHCP = true
	cfg.Internal.Addresses = nil
	cfg.Internal.Routes = []Route{{Destination: "203.0.113.0/24", Via: "10.9.9.9"}}
	cfg.External.Addresses = append(cfg.External.Addresses, "2001:db8:2::10/64")
	cfg.External.Routes = []Route{{Destination: "2001:db8:3::/48", Via: "fe80::1"}}
	cfg.External.VLAN = 4094
	if err := Validate(cfg); err != nil {
		t.Errorf("Validate = %v, want nil", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good, err := json.Marshal(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, body, want string
	}{
		{"valid", string(good), ""},
		{"misspelt key", strings.Replace(string(good), `"gateway"`, `"gatway"`, 1),
			`unknown field "gatway"`},
		{"invalid", strings.Replace(string(good), `"mtu":1500`, `"mtu":100`, 1),
			"external.mtu: 100 is outside"},
		{"not JSON", "internal: eth0", "is not a valid configuration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			if err := os.WriteFile(path, []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(path)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if cfg.External.MAC != validConfig().External.MAC {
					t.Errorf("Load lost the external MAC: %+v", cfg.External)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestDocExampleIsValid loads the configuration the package documentation
// shows, so that the example stays one Load accepts.
func TestDocExampleIsValid(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var example []string
	for _, line := range strings.Split(string(doc), "\n") {
		if s, ok := strings.CutPrefix(line, "//\t"); ok {
			example = append(example, s)
		}
	}
	if len(example) == 0 {
		t.Fatal("doc.go shows no indented example")
	}
	path := filepath.Join(t.TempDir(), "example.json")
	if err := os.WriteFile(path, []byte(strings.Join(example, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("the documentation's example: %v", err)
	}
	if cfg.External.VLAN != 120 || cfg.Firewall.TLSPort != 5500 {
		t.Errorf("example read as %+v", cfg)
	}
}
