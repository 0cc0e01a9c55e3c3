// Package nodedir holds what the node-wide directories of the shim share: the compilation cache
// (pkg/engine) and the modules directory (pkg/shim) are written by many processes at once (shims,
// runners, fillers, the warm agent) that coordinate only through the file system. It gives them
// one way to create a private directory, to take a flock with a deadline, and to bound a
// directory's size by evicting its least recently used files.
package nodedir
