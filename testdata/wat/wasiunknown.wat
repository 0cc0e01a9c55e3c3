;; wasiunknown.wat: imports a function of the WASI preview 1 module that WASI preview 1 does not have.
(module
  (import "wasi_snapshot_preview1" "no_such_function" (func $missing))
  (memory (export "memory") 1)
  (func (export "_start")
    call $missing))
