package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// resolveIn resolves the host path p inside the host root, following symlinks the way the host
// would: an absolute link target starts again at root (not at the installer's own /), and ".."
// never climbs above root. Components that do not exist yet are kept as they are, so the result
// can name a file or directory still to be created. It returns the path in the installer's
// filesystem (under root) and the same path as the host sees it.
func resolveIn(root, p string) (inRoot, onHost string, err error) {
	if !filepath.IsAbs(p) {
		return "", "", fmt.Errorf("%s is not an absolute host path", p)
	}
	var done []string // resolved host path components
	todo := strings.Split(filepath.Clean(p), "/")
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := filepath.Join(append([]string{root, "/"}, append(done, c)...)...)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			done = append(done, c)
			continue
		}
		if err != nil {
			return "", "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		if links++; links > 40 {
			return "", "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(cur)
		if err != nil {
			return "", "", err
		}
		if filepath.IsAbs(target) {
			done = nil
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	onHost = "/" + strings.Join(done, "/")
	return filepath.Join(root, onHost), onHost, nil
}

// hostFile is a host path with where it is in the installer's filesystem.
type hostFile struct {
	host string // as the host sees it
	path string // under -host-root, symlinks resolved inside it
}

func (o *options) resolve(p string) (hostFile, error) {
	in, h, err := resolveIn(o.hostRoot, p)
	if err != nil {
		return hostFile{}, err
	}
	return hostFile{host: h, path: in}, nil
}

// exists reports whether the host path p exists (symlinks resolved inside the host root).
func (o *options) exists(p string) bool {
	f, err := o.resolve(p)
	if err != nil {
		return false
	}
	_, err = os.Stat(f.path)
	return err == nil
}
