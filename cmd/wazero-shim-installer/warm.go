package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/nodedir"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/warm"
)

// warmRetry is how long the warm agent waits before it connects to containerd again.
const warmRetry = 5 * time.Second

// runWarm is -warm-cache: the node agent that compiles the modules of the wasm images containerd
// pulls (namespace o.warmNamespace) into the shim's compilation cache (o.cacheDir, a host path),
// so that their first containers on the node start warm. It runs until SIGTERM or SIGINT,
// reconnecting when containerd restarts. Each image's result is a line on stdout.
func runWarm(o options) error {
	l, err := o.detectLayout()
	if err != nil {
		return err
	}
	sock, shownSock, err := o.socket(l)
	if err != nil {
		return err
	}
	cache, err := o.resolve(o.cacheDir)
	if err != nil {
		return err
	}
	if err := nodedir.PrivateDir(cache.path); err != nil {
		return fmt.Errorf("compilation cache %s: %w", o.cacheDir, err)
	}
	maxBytes, err := engine.CacheMaxBytes()
	if err != nil {
		fmt.Fprintf(o.stderr, "wazero-shim-installer: warning: %v\n", err)
	}
	w := &warm.Warmer{
		Address: sock, Namespace: o.warmNamespace, CacheDir: cache.path, CacheMaxBytes: maxBytes,
		Report: func(r warm.Result) { fmt.Fprintln(o.stdout, r) },
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	fmt.Fprintf(o.stdout, "warm: watching namespace %s of containerd at %s, compiling into %s\n", o.warmNamespace, shownSock, o.cacheDir)
	for {
		err := w.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fmt.Fprintf(o.stderr, "wazero-shim-installer: warm: %v (again in %s)\n", err, warmRetry)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(warmRetry):
		}
	}
}
