package shimentry

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// defaultSocketDir is where shim sockets go when containerd names no directory: containerd's
// default state directory's "s" (what its pkg/shim uses). A variable for tests only.
var defaultSocketDir = "/run/containerd/s"

// groupLabels are the annotations that make containers share one shim, in order of precedence:
// the runc shim's own grouping label and the Kubernetes pod (sandbox) ID (as in pkg/shim).
var groupLabels = []string{
	"io.containerd.runc.v2.group",
	"io.kubernetes.cri.sandbox-id",
}

// addressFile is the file in the bundle that names the shim's socket (pkg/shim's addressFile:
// containerd 1.6 and 1.7 read it when they restart).
const addressFile = "address"

// start answers a `start`: with BootstrapParams on stdin (containerd >= 2.3) it replies with a
// BootstrapResult; otherwise (older daemons) it takes the parameters from the flags and the
// TTRPC_ADDRESS environment and replies with the bare socket address. Nothing may go to stderr on
// success: daemons before 2.3 read stdout and stderr together.
func (c call) start(server string, stdin io.Reader, stdout io.Writer) error {
	input, err := io.ReadAll(io.LimitReader(stdin, 10<<20))
	if err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	if c.namespace == "" {
		return fmt.Errorf("shim namespace cannot be empty")
	}
	p, err := decodeBootstrapParams(input)
	newProtocol := len(input) > 0 && err == nil && p.InstanceID == c.id && p.Namespace == c.namespace
	if newProtocol {
		if p.SocketDir != "" {
			// As containerd's pkg/shim: the server reads the socket directory from "s" for cleanup.
			_ = os.Remove("s")
			if err := os.Symlink(p.SocketDir, "s"); err != nil {
				return fmt.Errorf("record socket dir: %w", err)
			}
		}
	} else {
		p = bootstrapParams{InstanceID: c.id, Namespace: c.namespace, GRPCAddress: c.address,
			TTRPCAddress: os.Getenv("TTRPC_ADDRESS"), LogLevel: logLevelInfo}
		if c.debug {
			p.LogLevel = logLevelDebug
		}
	}
	address, err := startServer(server, p)
	if err != nil {
		return err
	}
	if newProtocol {
		_, err = stdout.Write(encodeBootstrapResult(address))
	} else {
		// A bare address: every daemon before 2.3 (1.6 included) reads it.
		_, err = io.WriteString(stdout, address)
	}
	return err
}

// startServer starts the server binary for p.InstanceID on a new socket, or returns the address of
// the server that already serves its group (the pod, or the namespace's shared server: shared.go).
// The working directory is the bundle.
func startServer(server string, p bootstrapParams) (_ string, retErr error) {
	group := p.InstanceID
	a, _ := readAnnotations(".")
	for _, l := range groupLabels {
		if g := a[l]; g != "" {
			group = g
			break
		}
	}
	// A task that asks for the shared server goes there, a pod's too (its containers follow
	// the pod's sandbox: containerd 2.x sends them to the sandbox's server, 1.x runs `start`
	// for each with the same annotations and setting).
	linger, err := sharedLinger(a, os.Getenv(SharedEnv))
	if err != nil {
		return "", err
	}
	if linger > 0 {
		group = sharedGroup
	}
	socketDir := p.SocketDir
	if socketDir == "" {
		socketDir = defaultSocketDir
	}
	address := socketAddress(socketDir, p.GRPCAddress, p.Namespace, group)
	path := strings.TrimPrefix(address, "unix://")
	var extraEnv []string
	if linger > 0 {
		c, err := lockShared(path)
		if err != nil {
			return "", err
		}
		defer c.unlock()
		if err := c.claim(p.InstanceID); err != nil {
			return "", err
		}
		defer func() {
			if retErr != nil {
				c.unclaim(p.InstanceID)
			}
		}()
		extraEnv = sharedServerEnv(path, linger)
	}
	l, err := listen(path)
	if err != nil {
		if !errors.Is(err, syscall.EADDRINUSE) {
			return "", fmt.Errorf("create shim socket %s: %w", address, err)
		}
		if canConnect(path) {
			return address, writeAddress(address) // the group's server is alive: it serves this task too
		}
		if err := os.Remove(path); err != nil {
			return "", fmt.Errorf("remove stale shim socket: %w", err)
		}
		if l, err = listen(path); err != nil {
			return "", fmt.Errorf("create shim socket %s: %w", address, err)
		}
	}
	defer func() {
		if retErr != nil {
			l.Close()
			_ = os.Remove(path)
		}
	}()
	f, err := l.File()
	if err != nil {
		return "", err
	}
	defer f.Close()
	args := []string{"-namespace", p.Namespace, "-id", p.InstanceID, "-address", p.GRPCAddress}
	if p.LogLevel <= logLevelDebug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(server, args...)
	cmd.Dir, _ = os.Getwd()
	cmd.Env = append(os.Environ(), "TTRPC_ADDRESS="+p.TTRPCAddress, "GRPC_ADDRESS="+p.GRPCAddress)
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.ExtraFiles = []*os.File{f} // fd 3: the listening socket pkg/shim serves on
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start shim server %s: %w", server, err)
	}
	// Best effort, as containerd's pkg/shim: the server is a little likelier than containerd to
	// be chosen by the OOM killer. A failure is not reported (stderr must stay empty).
	_ = adjustOOMScore(cmd.Process.Pid)
	return address, writeAddress(address)
}

// socketAddress is containerd's shim socket address for (grpcAddress, namespace, group) under dir
// (its pkg/shim CreateSocketAddress): the sha256 of their path-joined names.
func socketAddress(dir, grpcAddress, namespace, group string) string {
	d := sha256.Sum256([]byte(filepath.Join(grpcAddress, namespace, group)))
	return fmt.Sprintf("unix://%s/%x", dir, d)
}

// listen creates the unix socket at path (its directory 0700, the socket 0600).
func listen(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("mkdir failed for %s: %w", path, err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		os.Remove(path)
		l.Close()
		return nil, fmt.Errorf("chmod failed for %s: %w", path, err)
	}
	return l, nil
}

// canConnect reports whether a server accepts connections on the socket at path.
func canConnect(path string) bool {
	conn, err := net.DialTimeout("unix", path, 100*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// adjustOOMScore sets pid's oom_score_adj to its parent's (containerd's) plus one.
func adjustOOMScore(pid int) error {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", os.Getppid()))
	if err != nil {
		return err
	}
	score, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return err
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(strconv.Itoa(max(-1000, min(score+1, 1000))))
	return err
}

// writeAddress writes address to addressFile in the working directory (the bundle), atomically.
func writeAddress(address string) error {
	tmp, err := os.CreateTemp(".", addressFile+".*.tmp")
	if err != nil {
		return fmt.Errorf("record the shim address: %w", err)
	}
	_, err = tmp.WriteString(address)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), addressFile)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("record the shim address: %w", err)
	}
	return nil
}

// readAnnotations reads only the annotations of bundle/config.json.
func readAnnotations(bundle string) (map[string]string, error) {
	f, err := os.Open(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var s struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.NewDecoder(f).Decode(&s); err != nil {
		return nil, err
	}
	return s.Annotations, nil
}
