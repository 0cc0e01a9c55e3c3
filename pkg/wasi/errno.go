package wasi

import (
	"errors"

	"golang.org/x/sys/unix"
)

// wasiErrno are the WASI codes of the Linux errors this package's own calls can return.
var wasiErrno = map[unix.Errno]errno{
	unix.EACCES: 2, unix.EAGAIN: 6, unix.EBADF: errBadf, unix.EBUSY: 10, unix.EEXIST: errExist,
	unix.EFAULT: errFault, unix.EINTR: 27, unix.EINVAL: errInval, unix.EIO: errIO, unix.EISDIR: 31,
	unix.ELOOP: 32, unix.ENAMETOOLONG: errNametoolong, unix.ENOENT: 44, unix.ENOMEM: 48,
	unix.ENOSPC: 51, unix.ENOSYS: 52, unix.ENOTDIR: 54, unix.ENOTEMPTY: 55, unix.ENOTSOCK: errNotsock,
	unix.EOPNOTSUPP: errNotsup, unix.EPERM: errPerm, unix.EROFS: 69, unix.EXDEV: 75,
}

// toErrno is the WASI code of err (nil: success; an error without one: EIO).
func toErrno(err error) errno {
	if err == nil {
		return errSuccess
	}
	var en unix.Errno
	if errors.As(err, &en) {
		if e, ok := wasiErrno[en]; ok {
			return e
		}
	}
	return errIO
}
