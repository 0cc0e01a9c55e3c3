;; badimport.wat: has a _start but imports a function no host provides.
(module
  (import "env" "not_a_wasi_function" (func $missing))
  (memory (export "memory") 1)
  (func (export "_start")
    call $missing))
