// Command nativetool is a static native Linux program for the tests of native containers in
// wazero pods (integration/cri_native_test.go): the sidecars and init containers a service mesh
// or a platform injects, reduced to what the tests check.
//
//	nativetool hello ARGS...          print "hello from native ARGS..."
//	nativetool get URL WANT [SECONDS] GET URL until the body is WANT (default 20 s); exit 1 if never
//	nativetool write PATH TEXT        write TEXT to PATH
//	nativetool exit N                 print to stderr and exit with status N
//	nativetool wait-term              print "ready", then exit 0 on SIGTERM
//	nativetool script PATH ARGS...    the interpreter of /script.sh (#!/nativetool script)
//	nativetool alloc MIB              touch MIB MiB of memory (the OOM killer stops it at a lower limit)
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: nativetool hello|get|write|exit|wait-term|script ...")
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "hello":
		fmt.Println(strings.Join(append([]string{"hello from native"}, args...), " "))
	case "get":
		get(args)
	case "write":
		if len(args) != 2 {
			fail("usage: nativetool write PATH TEXT")
		}
		if err := os.WriteFile(args[0], []byte(args[1]), 0o644); err != nil {
			fail(err.Error())
		}
		fmt.Printf("wrote %s\n", args[0])
	case "exit":
		n, _ := strconv.Atoi(args[0])
		fmt.Fprintf(os.Stderr, "native container exiting with %d\n", n)
		os.Exit(n)
	case "wait-term":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		<-c
		fmt.Println("got SIGTERM")
	case "alloc":
		n, _ := strconv.Atoi(args[0])
		var hold [][]byte
		for i := 0; i < n; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			hold = append(hold, b)
		}
		fmt.Printf("allocated %d MiB\n", len(hold))
	case "script":
		fmt.Println(strings.Join(append([]string{"hello from script"}, args[1:]...), " "))
	default:
		fail("unknown command " + os.Args[1])
	}
}

func get(args []string) {
	if len(args) < 2 {
		fail("usage: nativetool get URL WANT [SECONDS]")
	}
	secs := 20
	if len(args) > 2 {
		secs, _ = strconv.Atoi(args[2])
	}
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	c := &http.Client{Timeout: 2 * time.Second}
	var last string
	for time.Now().Before(deadline) {
		resp, err := c.Get(args[0])
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) == args[1] {
				fmt.Printf("sidecar got %q from %s\n", b, args[0])
				return
			}
			last = fmt.Sprintf("%d %q", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	fail(fmt.Sprintf("GET %s: never %q in %d s; last: %s", args[0], args[1], secs, last))
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "nativetool:", msg)
	os.Exit(1)
}
