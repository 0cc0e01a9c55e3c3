package wasi

// WASI preview 1 numbers (wasi_snapshot_preview1.witx): error codes, file types, flags, rights
// and the byte layout of the structures this package reads and writes.

// errno is a WASI error code.
type errno uint16

const (
	errSuccess     errno = 0
	errBadf        errno = 8
	errExist       errno = 20
	errInval       errno = 28
	errIO          errno = 29
	errNametoolong errno = 37
	errNotsock     errno = 57
	errNotsup      errno = 58
	errFault       errno = 21
	errPerm        errno = 63
	errRofs        errno = 69
	errNotcapable  errno = 76
)

// File types (filetype).
const (
	typeUnknown     = 0
	typeCharDevice  = 2
	typeDirectory   = 3
	typeRegularFile = 4
	typeSocketDgram = 5
	typeSocketStrm  = 6
)

// File descriptor flags (fdflags).
const (
	fdflagAppend   = 1
	fdflagDsync    = 2
	fdflagNonblock = 4
	fdflagRsync    = 8
	fdflagSync     = 16
	// fdflagsKept are the flags this package records, because wazero does not report them.
	fdflagsKept = fdflagDsync | fdflagRsync | fdflagSync
)

// Open flags (oflags), lookup flags and time flags (fstflags).
const (
	oflagTrunc    = 8
	lookupFollow  = 1
	fstAtim       = 1
	fstAtimNow    = 2
	fstMtim       = 4
	fstMtimNow    = 8
	fstflagsValid = fstAtim | fstAtimNow | fstMtim | fstMtimNow
)

// Rights (rights), one bit each.
const (
	rightFdDatasync = 1 << iota
	rightFdRead
	rightFdSeek
	rightFdFdstatSetFlags
	rightFdSync
	rightFdTell
	rightFdWrite
	rightFdAdvise
	rightFdAllocate
	rightPathCreateDirectory
	rightPathCreateFile
	rightPathLinkSource
	rightPathLinkTarget
	rightPathOpen
	rightFdReaddir
	rightPathReadlink
	rightPathRenameSource
	rightPathRenameTarget
	rightPathFilestatGet
	rightPathFilestatSetSize
	rightPathFilestatSetTimes
	rightFdFilestatGet
	rightFdFilestatSetSize
	rightFdFilestatSetTimes
	rightPathSymlink
	rightPathRemoveDirectory
	rightPathUnlinkFile
	rightPollFdReadwrite
	rightSockShutdown
	rightSockAccept

	rightsAll = rightSockAccept<<1 - 1
)

// What each file type can be used for: a descriptor's rights never exceed its type's.
const (
	// rightsFile: regular files (and anything not below).
	rightsFile = rightFdDatasync | rightFdRead | rightFdSeek | rightFdFdstatSetFlags | rightFdSync |
		rightFdTell | rightFdWrite | rightFdAdvise | rightFdAllocate | rightFdFilestatGet |
		rightFdFilestatSetSize | rightFdFilestatSetTimes | rightPollFdReadwrite
	// rightsDir: directories, which cannot be read, written, sized, sought or allocated.
	rightsDir = rightFdDatasync | rightFdFdstatSetFlags | rightFdSync | rightPathCreateDirectory |
		rightPathCreateFile | rightPathLinkSource | rightPathLinkTarget | rightPathOpen |
		rightFdReaddir | rightPathReadlink | rightPathRenameSource | rightPathRenameTarget |
		rightPathFilestatGet | rightPathFilestatSetSize | rightPathFilestatSetTimes |
		rightFdFilestatGet | rightFdFilestatSetTimes | rightPathSymlink |
		rightPathRemoveDirectory | rightPathUnlinkFile
	// rightsCharDevice: terminals and other character devices cannot seek (wasi-libc's isatty
	// tests exactly these two rights).
	rightsCharDevice = rightsFile &^ (rightFdSeek | rightFdTell)
	// rightsSocket: sockets.
	rightsSocket = rightFdRead | rightFdWrite | rightFdFdstatSetFlags | rightFdFilestatGet |
		rightPollFdReadwrite | rightSockShutdown | rightSockAccept
	// rightsInheriting: what a directory passes on to what is opened through it.
	rightsInheriting = rightsFile | rightsDir
)

// rightsOf is what a descriptor of file type t can have.
func rightsOf(t uint8) uint64 {
	switch t {
	case typeDirectory:
		return rightsDir
	case typeCharDevice:
		return rightsCharDevice
	case typeSocketDgram, typeSocketStrm:
		return rightsSocket
	default:
		return rightsFile
	}
}

// Byte layouts.
const (
	fdstatSize  = 24 // filetype u8 @0, flags u16 @2, rights_base u64 @8, rights_inheriting u64 @16
	prestatSize = 8  // tag u8 @0, name length u32 @4
	subSize     = 48 // userdata u64 @0, tag u8 @8, fd u32 @16 (fd_read, fd_write)
	eventSize   = 32 // userdata u64 @0, error u16 @8, type u8 @10, nbytes u64 @16, flags u16 @24

	eventClock   = 0
	eventFdRead  = 1
	eventFdWrite = 2
)
