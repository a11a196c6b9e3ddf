package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/qapi-az/qapi/gokrazy"
)

const (
	// logLimit bounds one log file; the previous one is kept as NAME.log.1.
	logLimit = 4 << 20
	// dontSupervise is the exit code that tells gokrazy not to restart a
	// program.
	dontSupervise = 125
)

// runner runs one supervised program with its output copied to the console
// and a log file. Its fields are paths, so that tests can point them
// elsewhere.
type runner struct {
	manifest string // the instance description
	programs string // folder of the real programs
	logs     string // folder of the log files
	console  string // the console device
	stderr   io.Writer
	poll     time.Duration // how often to look for awaited files
}

// appliance is the runner of the appliance's root slot.
var appliance = runner{
	manifest: gokrazy.ManifestPath,
	programs: "/gokrazy/programs",
	logs:     "/perm/log",
	console:  "/dev/console",
	stderr:   os.Stderr,
	poll:     500 * time.Millisecond,
}

// runProgram runs the program name with args and returns its exit code, so
// that gokrazy sees the program's own (125 keeps gokrazy from restarting
// it). A program whose required files are missing is not started; one
// whose awaited files are missing is started once they exist.
func (r runner) runProgram(name string, args []string) int {
	if in, err := gokrazy.Load(r.manifest); err == nil {
		if p, ok := in.Program(name); ok {
			r.await(name, p.Awaits)
			for _, f := range p.Requires {
				if _, err := os.Stat(f); err != nil {
					r.tell(fmt.Sprintf("%s: not started: %s is missing; %s\n", name, f, p.Hint))
					return dontSupervise
				}
			}
		}
	}

	cmd := exec.Command(filepath.Join(r.programs, name), args...)
	cmd.Stdin = os.Stdin
	pr, pw, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(r.stderr, "%s: %v\n", name, err)
		return 1
	}
	cmd.Stdout, cmd.Stderr = pw, pw

	sinks := []io.Writer{r.stderr}
	if c, err := os.OpenFile(r.console, os.O_WRONLY|os.O_APPEND, 0); err == nil {
		defer c.Close()
		sinks = append(sinks, c)
	}
	if l, err := r.openLog(name); err == nil {
		defer l.Close()
		sinks = append(sinks, l)
	} else {
		fmt.Fprintf(r.stderr, "%s: no log file: %v\n", name, err)
	}

	if err := cmd.Start(); err != nil {
		pw.Close()
		pr.Close()
		r.tell(fmt.Sprintf("%s: not started: %v\n", name, err))
		return 1
	}
	pw.Close()

	// Pass stop signals on: gokrazy signals the process group, but a
	// signal sent to this process alone must reach the program too.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	go func() {
		for s := range sig {
			cmd.Process.Signal(s)
		}
	}()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := bufio.NewScanner(pr)
		s.Buffer(make([]byte, 64<<10), 1<<20)
		for s.Scan() {
			line := append([]byte(name+": "), s.Bytes()...)
			line = append(line, '\n')
			for _, w := range sinks {
				w.Write(line)
			}
		}
	}()
	err = cmd.Wait()
	wg.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

// await returns once every file of files exists, saying on the console
// which one it waits for.
func (r runner) await(name string, files []string) {
	for _, f := range files {
		told := false
		for {
			if _, err := os.Stat(f); err == nil {
				break
			}
			if !told {
				r.tell(fmt.Sprintf("%s: waiting for %s, which another program makes\n",
					name, f))
				told = true
			}
			time.Sleep(r.poll)
		}
	}
}

// tell writes a message to stderr and the console.
func (r runner) tell(msg string) {
	io.WriteString(r.stderr, msg)
	if c, err := os.OpenFile(r.console, os.O_WRONLY|os.O_APPEND, 0); err == nil {
		c.WriteString(msg)
		c.Close()
	}
}

// openLog opens the program's log for appending, first moving a log past
// logLimit aside.
func (r runner) openLog(name string) (*os.File, error) {
	if err := os.MkdirAll(r.logs, 0o700); err != nil {
		return nil, err
	}
	p := filepath.Join(r.logs, name+".log")
	if fi, err := os.Stat(p); err == nil && fi.Size() > logLimit {
		os.Rename(p, p+".1")
	}
	return os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
}
