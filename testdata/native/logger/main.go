// Command logger is a containerd logging binary (ctr run --log-uri binary:///PATH/logger?OUT) for the
// integration tests. containerd's protocol: the shim starts it with the container's stdout on fd 3,
// its stderr on fd 4 and a "ready" pipe on fd 5, which the logger closes once it is set up; the
// environment carries CONTAINER_ID and CONTAINER_NAMESPACE; the URI's query becomes the arguments.
//
// It appends to the file OUT (its first argument):
//
//	start pid=PID id=CONTAINER_ID ns=CONTAINER_NAMESPACE args=["OUT",...]
//	env NAME...           the names of its environment variables, sorted
//	stdout LINE           one per line of the container's stdout
//	stderr LINE           one per line of the container's stderr
//	sigterm               if it got SIGTERM (containerd's runc shim sends one when it closes the IO)
//	exit pid=PID          once both streams reached EOF, just before it exits 0
//
// SIGTERM does not cut it short: it keeps draining until EOF (at most 5 more seconds).
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: logger OUTFILE (from binary:///PATH/logger?OUTFILE)")
		os.Exit(2)
	}
	out, err := os.OpenFile(os.Args[1], os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	write := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		out.WriteString(s + "\n")
	}
	pid := strconv.Itoa(os.Getpid())
	write(fmt.Sprintf("start pid=%s id=%s ns=%s args=%q", pid, os.Getenv("CONTAINER_ID"), os.Getenv("CONTAINER_NAMESPACE"), os.Args[1:]))
	var names []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		names = append(names, k)
	}
	sort.Strings(names)
	write("env " + strings.Join(names, " "))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() {
		<-sig
		write("sigterm")
		time.Sleep(5 * time.Second)
		write("exit after sigterm without EOF pid=" + pid)
		os.Exit(1)
	}()

	var wg sync.WaitGroup
	for fd, name := range map[uintptr]string{3: "stdout", 4: "stderr"} {
		f := os.NewFile(fd, name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				write(name + " " + sc.Text())
			}
		}()
	}
	// Ready: the shim may now start the container.
	os.NewFile(5, "ready").Close()
	wg.Wait()
	write("exit pid=" + pid)
	out.Close()
}
