;; wasisig.wat: imports a WASI preview 1 function by its real name with the wrong signature
;; (fd_write takes four i32 and returns one).
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    i32.const 1
    call $fd_write))
