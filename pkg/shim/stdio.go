package shim

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
)

// stdio is a container's standard streams: the files the runner gets as fds 0-2, and what the
// shim holds on to for the container's lifetime.
type stdio struct {
	// runner are the files to give the runner; the shim closes its copies once the runner has them.
	runner engine.Stdio
	// held stay open until the container is deleted: a reader on each output FIFO, so the guest
	// never gets EPIPE when the client (`ctr run -d`, a restarted CRI plugin) goes away.
	held []io.Closer
	// stdinHold is the shim's own writer on the stdin FIFO, closed by CloseIO.
	stdinHold *os.File
	// logger is the binary:// logging process, if any.
	logger *exec.Cmd
}

// openStdio opens the container's stdio as containerd passes it in CreateTaskRequest: an empty
// path is /dev/null; a plain path or fifo:// is a FIFO the client created; file:///PATH appends to
// a file; binary:///PATH?args starts a logging binary that reads the streams (containerd's
// logging-binary protocol: stdout on fd 3, stderr on fd 4, ready signal by closing fd 5).
// The guest writes straight into the FIFO or file: the shim copies nothing.
func openStdio(ctx context.Context, id, ns, stdin, stdout, stderr string) (_ *stdio, retErr error) {
	s := &stdio{}
	defer func() {
		if retErr != nil {
			s.runnerDone()
			s.Close()
		}
	}()
	if stdin != "" {
		// Open our reader without waiting for a writer, then hold a writer of our own until
		// CloseIO: the guest must not read EOF before the client's writer shows up, nor after
		// a client that wrote nothing went away without CloseIO.
		r, err := os.OpenFile(stdin, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open stdin %s: %w", stdin, err)
		}
		s.runner.Stdin = r // exec gives the runner a blocking descriptor (os.File.Fd)
		if s.stdinHold, err = os.OpenFile(stdin, os.O_WRONLY, 0); err != nil {
			return nil, fmt.Errorf("open stdin %s: %w", stdin, err)
		}
	}
	if u, err := url.Parse(stdout); err == nil && u.Scheme == "binary" {
		if err := s.startLogger(ctx, u, id, ns); err != nil {
			return nil, err
		}
		return s, nil
	}
	if stderr == "" {
		// No stderr (NullIO): keep what the runner prints there, such as the reason it crashed,
		// in the shim log instead of losing it (the first lines only).
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		s.runner.Stderr = w
		go logLines(ctx, id, r, 20)
	}
	var err error
	if s.runner.Stdout, err = s.openOutput(ctx, stdout); err != nil {
		return nil, fmt.Errorf("open stdout %s: %w", stdout, err)
	}
	if stderr == stdout && s.runner.Stdout != nil {
		s.runner.Stderr = s.runner.Stdout
	} else if s.runner.Stderr == nil {
		if s.runner.Stderr, err = s.openOutput(ctx, stderr); err != nil {
			return nil, fmt.Errorf("open stderr %s: %w", stderr, err)
		}
	}
	return s, nil
}

// openOutput opens one output stream for writing.
func (s *stdio) openOutput(ctx context.Context, uri string) (*os.File, error) {
	if uri == "" {
		return nil, nil
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "", "fifo":
		p := uri
		if u.Scheme != "" {
			p = u.Path
		}
		// Our own reader makes the open for writing succeed at once and keeps the FIFO from
		// ever having no reader.
		r, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, err
		}
		s.held = append(s.held, r)
		return os.OpenFile(p, os.O_WRONLY, 0)
	case "file":
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
			return nil, err
		}
		return os.OpenFile(u.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	default:
		return nil, fmt.Errorf("unsupported stdio URI scheme %q (supported: fifo, file://, binary://)", u.Scheme)
	}
}

// startLogger starts the binary:// logging process and gives the runner the write ends of its pipes.
func (s *stdio) startLogger(ctx context.Context, u *url.URL, id, ns string) error {
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		errR.Close()
		errW.Close()
		return err
	}
	// containerd's convention: each query key, then its first value (even an empty one).
	var args []string
	for k, vs := range u.Query() {
		args = append(args, k)
		if len(vs) > 0 {
			args = append(args, vs[0])
		}
	}
	cmd := exec.Command(u.Path, args...)
	cmd.Env = []string{"CONTAINER_ID=" + id, "CONTAINER_NAMESPACE=" + ns}
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	err = cmd.Start()
	outR.Close()
	errR.Close()
	readyW.Close()
	s.runner.Stdout, s.runner.Stderr = outW, errW
	if err != nil {
		readyR.Close()
		return fmt.Errorf("start logging binary %s: %w", u.Path, err)
	}
	s.logger = cmd
	// The logger closes fd 5 (or writes to it) when it is ready to read.
	done := make(chan struct{})
	go func() {
		var b [1]byte
		_, _ = readyR.Read(b[:])
		readyR.Close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("logging binary %s did not signal ready within 10s", u.Path)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runnerDone closes the shim's copies of the files the runner now has.
func (s *stdio) runnerDone() {
	for _, f := range []*os.File{s.runner.Stdin, s.runner.Stdout, s.runner.Stderr} {
		if f != nil {
			f.Close()
		}
	}
}

// CloseStdin is containerd's CloseIO: the shim lets go of its writer on the stdin FIFO, so the
// guest reads EOF once the client has closed its end too.
func (s *stdio) CloseStdin() {
	if s.stdinHold != nil {
		s.stdinHold.Close()
		s.stdinHold = nil
	}
}

// Close releases everything held for the container. A logging binary gets SIGTERM and up to
// 12 seconds to drain its pipes and exit before SIGKILL, as containerd's own shims do.
func (s *stdio) Close() {
	s.CloseStdin()
	for _, c := range s.held {
		c.Close()
	}
	s.held = nil
	if s.logger != nil {
		done := make(chan struct{})
		go func() { s.logger.Wait(); close(done) }()
		_ = s.logger.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(12 * time.Second):
			s.logger.Process.Kill()
			<-done
		}
		s.logger = nil
	}
}

// logLines copies up to max lines from r into the shim log, then discards the rest until EOF.
func logLines(ctx context.Context, id string, r *os.File, max int) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for n := 0; sc.Scan(); n++ {
		if n < max {
			log.G(ctx).WithField("id", id).Warn("container stderr (no stderr configured): " + sc.Text())
		}
	}
}
