;; calls.wasm (wat2wasm calls.wat -o calls.wasm): loops of WASI calls for bench_test.go.
(module
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovec at 16: one byte at 0
  (data (i32.const 16) "\00\00\00\00\01\00\00\00")
  (func (export "fdstat") (param $n i32)
    (loop $l
      (drop (call $fdstat (i32.const 1) (i32.const 64)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n))))
  (func (export "write") (param $n i32)
    (loop $l
      (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 96)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n))))
  (func (export "_start")))
