// Command qapi is the administrator's and operator's command line: keys and
// certificate requests, registration, archives, image builds, signing and
// pushing updates. Each subcommand lives in its own file of this package
// and registers itself in init.
package main

import (
	"fmt"
	"os"
	"sort"
)

// command is one subcommand of qapi.
type command struct {
	// summary is one line for the usage listing.
	summary string
	// run executes the subcommand with the arguments after its name and
	// returns the process exit code.
	run func(args []string) int
}

var commands = map[string]command{}

// register adds a subcommand; it panics on a duplicate name, a programming
// error found at start-up.
func register(name string, c command) {
	if _, dup := commands[name]; dup {
		panic("qapi: duplicate subcommand " + name)
	}
	commands[name] = c
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: qapi COMMAND [flags] [args]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-16s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(os.Stderr, "\nRun 'qapi COMMAND -h' for a command's flags.")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "qapi: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	os.Exit(c.run(os.Args[2:]))
}
