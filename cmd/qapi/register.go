package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/manage"
)

func init() {
	register("register", command{
		summary: "register this security server at the central server (4.1.2)",
		run:     runRegister,
	})
}

const manageConnDefault = "/perm/qapi/manage/manage.json"

type registerCmd struct {
	args  string
	help  string
	flags func(fs *flag.FlagSet) func(c *manage.Client, args []string) error
}

func registerCmds() map[string]registerCmd {
	ctx := context.Background()
	call := func(c *manage.Client, method, path string, body any) error {
		var out json.RawMessage
		if err := c.Do(ctx, method, path, body, &out); err != nil {
			return err
		}
		os.Stdout.Write(out)
		return nil
	}
	simple := func(method, path string) func(*flag.FlagSet) func(*manage.Client,
		[]string) error {
		return func(*flag.FlagSet) func(*manage.Client, []string) error {
			return func(c *manage.Client, _ []string) error { return call(c, method, path, nil) }
		}
	}
	file := func(path string) func(*flag.FlagSet) func(*manage.Client, []string) error {
		return func(*flag.FlagSet) func(*manage.Client, []string) error {
			return func(c *manage.Client, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("give one file")
				}
				b, err := os.ReadFile(args[0])
				if err != nil {
					return err
				}
				return call(c, "POST", path, b)
			}
		}
	}
	return map[string]registerCmd{
		"status": {help: "show what registration has reached and what to do next",
			flags: simple("GET", "/api/status")},
		"init": {help: "set the owner, server code and address (4.1.2)",
			flags: func(fs *flag.FlagSet) func(*manage.Client, []string) error {
				owner := fs.String("owner", "", "member INSTANCE/CLASS/CODE")
				code := fs.String("code", "", "server code")
				addr := fs.String("address", "", "host:port of the server-side proxy")
				clients := fs.String("clients", "", "served subsystems, comma-separated "+
					"INSTANCE/CLASS/CODE/SUBSYSTEM (the owner is always served)")
				return func(c *manage.Client, _ []string) error {
					o, err := ident.ParseClient(*owner)
					if err != nil {
						return err
					}
					id := manage.Identity{Owner: o, Code: *code, Address: *addr,
						Clients: []ident.Client{o}}
					for _, s := range strings.Split(*clients, ",") {
						if s = strings.TrimSpace(s); s == "" {
							continue
						}
						cl, err := ident.ParseClient(s)
						if err != nil {
							return err
						}
						id.Clients = append(id.Clients, cl)
					}
					return call(c, "POST", "/api/configure", id)
				}
			}},
		"anchor": {args: "FILE", help: "install the operator's configuration anchor " +
			"(4.1.2.3-4.1.2.5)", flags: file("/api/anchor")},
		"csr": {args: "auth|signing", help: "generate the key if needed and print its " +
			"certificate request (4.1.2.6-4.1.2.9)",
			flags: func(*flag.FlagSet) func(*manage.Client, []string) error {
				return func(c *manage.Client, args []string) error {
					if len(args) != 1 || (args[0] != "auth" && args[0] != "signing") {
						return fmt.Errorf("give auth or signing")
					}
					var out struct {
						PEM string `json:"pem"`
					}
					if err := c.Do(ctx, "GET", "/api/csr/"+args[0], nil, &out); err != nil {
						return err
					}
					fmt.Print(out.PEM)
					return nil
				}
			}},
		"submit": {help: "generate both keys and hand their requests to the " +
			"certification centre (4.1.2.10)", flags: simple("POST", "/api/submit")},
		"fetch": {help: "import the certificates the operator has issued",
			flags: simple("POST", "/api/fetch")},
		"import": {args: "FILE", help: "import a certificate handed over as a file",
			flags: file("/api/import")},
		"server": {help: "send the registration request to the central server",
			flags: simple("POST", "/api/register")},
		"registration": {help: "ask the central server how the registration stands",
			flags: simple("GET", "/api/registration")},
	}
}

func registerUsage(cmds map[string]registerCmd) {
	fmt.Fprintln(os.Stderr, "usage: qapi register [-conn FILE] COMMAND [flags] [args]\n\n"+
		"Steps: init, anchor, submit, (operator approves) fetch, server, (operator\n"+
		"approves) registration. The connection file is the one the security server\n"+
		"wrote (default "+manageConnDefault+", or $QAPI_MANAGE_CONN).\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sortStrings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-22s %s\n", strings.TrimSpace(n+" "+cmds[n].args),
			cmds[n].help)
	}
}

func runRegister(args []string) int {
	cmds := registerCmds()
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	def := os.Getenv("QAPI_MANAGE_CONN")
	if def == "" {
		def = manageConnDefault
	}
	conn := fs.String("conn", def, "management connection file")
	fs.Usage = func() { registerUsage(cmds) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		registerUsage(cmds)
		return 2
	}
	name := fs.Arg(0)
	rc, ok := cmds[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "qapi register: unknown command %q\n\n", name)
		registerUsage(cmds)
		return 2
	}
	sub := flag.NewFlagSet("register "+name, flag.ContinueOnError)
	do := rc.flags(sub)
	if err := sub.Parse(interspersed(sub, fs.Args()[1:])); err != nil {
		return 2
	}
	c, err := manage.DialAPI(*conn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "qapi register:", err)
		return 1
	}
	if err := do(c, sub.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "qapi register %s: %v\n", name, err)
		return 1
	}
	return 0
}
