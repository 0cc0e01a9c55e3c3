// Package wasi is the WASI preview 1 host module the shim's guests import
// (wasi_snapshot_preview1): wazero's own functions behind a descriptor table of this package's,
// so that descriptors behave as in wasmtime, the reference runtime, where wazero v1.12 differs.
//
// wazero keeps its descriptor table internal. This package keeps a table of its own in front of
// it: every descriptor a guest sees is a number of this table, which maps it to one of wazero's.
// Most functions only translate the descriptor and call wazero's original (FunctionExporter,
// api.FunctionDefinition.GoFunction); the table itself provides what wazero's refuses or does
// not track:
//
//   - fd_renumber from and onto stdio and preopened directories (dup2, freopen), and EBADF for a
//     destination that is not open (wazero: ENOTSUP, and success onto a closed descriptor);
//   - rights: each descriptor has the rights it was opened with (path_open's rights, limited by
//     the directory's inheriting rights and by what its file type supports), reported by
//     fd_fdstat_get, lowered by fd_fdstat_set_rights (wazero: ENOSYS) and enforced where a
//     program relies on them (reads, writes, truncation, allocation: ENOTCAPABLE);
//   - the file descriptor flags a file was opened with (O_SYNC, O_DSYNC, O_RSYNC) in fd_fdstat_get;
//   - fd_prestat_get and fd_prestat_dir_name from the table (a buffer shorter than the name is
//     ENAMETOOLONG; wazero's check was inverted);
//   - poll_oneoff with FD_WRITE subscriptions (wazero: ENOTSUP), which reports ready descriptors
//     without the clock event;
//   - fd_pwrite on a file opened with O_APPEND (wazero: EIO): the data goes to the end of the
//     file, as Linux does, and the file offset is unchanged;
//   - path_readlink into a short buffer truncates the target (wazero: ERANGE);
//   - path_filestat_set_times without LOOKUPFLAGS_SYMLINK_FOLLOW changes the symlink itself
//     (wazero: its target);
//   - path_link with LOOKUPFLAGS_SYMLINK_FOLLOW is EINVAL (wazero ignored the flag);
//   - sock_shutdown on a descriptor that is not a socket is ENOTSOCK (wazero: EBADF).
//
// An instance's environment can also come from its context (WithEnviron) instead of its
// ModuleConfig, which is cheaper to give per instance.
//
// The table lives in the context of the instantiation (NewContext): one per guest instance. An
// instance instantiated without one gets wazero's functions unchanged.
//
// docs/WASI.md has the measurement against the official WASI test suite; RATIONALE.md why this
// design.
package wasi
